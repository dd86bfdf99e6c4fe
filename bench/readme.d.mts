import type { CaseResult } from "./report";

/** What bench/results.json holds (the parts the README tables use). */
export type BenchRun = {
  ns: number[];
  fastIndexes: boolean;
  indexCheckedAt: number[];
  timings: Record<string, { seedMs: number; casesMs: number }>;
  wallMs: number;
  results: CaseResult[];
};

export type LiveCell = { invalidated: number; rerunReads: number };

/** What bench/liveResults.json holds (the parts the README table uses). */
export type LiveRun = {
  qs: number[];
  timings: Record<string, { seedAndSubscribeMs: number; writesMs: number }>;
  wallMs: number;
  results: Record<
    string,
    Array<{ write: string; byQuery: Record<string, LiveCell>; total: LiveCell }>
  >;
};

export const README_PATH: string;
export const RESULTS_PATH: string;
export const LIVE_RESULTS_PATH: string;
export function markdownTable(results: CaseResult[], ns: number[]): string;
export function liveFlat(small: LiveCell, large: LiveCell): boolean;
export function liveTable(live: LiveRun): string;
export function resultsSection(run: BenchRun): string;
export function liveSection(live: LiveRun): string;
export function replaceSection(text: string, name: string, content: string): string;
export function updateReadme(
  runs: { results?: BenchRun; live?: LiveRun },
  readmePath?: string,
): void;
