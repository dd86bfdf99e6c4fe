export declare const DEMO_VIDEO_URL: string;
export declare class DemoWorkerError extends Error {}
export type DemoWorkerOptions = {
  /** The deployment's HTTP actions URL (`.convex.site`; local: http://127.0.0.1:3211). */
  siteUrl: string;
  secret: string;
  workerId?: string;
  /** Heartbeats per job, and the pause before each. */
  steps?: number;
  stepMs?: number;
  /** Pause after a 204 before claiming again. */
  idleMs?: number;
  /** Return at the first 204 instead of waiting for more jobs. */
  stopWhenIdle?: boolean;
  /** The https URL reported as the video (development mode), or uploaded (bucket mode). */
  videoUrl?: string;
  fetch?: (url: string, init?: RequestInit) => Promise<Response>;
  signal?: AbortSignal;
  log?: (line: string) => void;
};
/** Claims and completes jobs; returns the ids of the jobs it completed. */
export declare function runDemoWorker(options: DemoWorkerOptions): Promise<string[]>;
