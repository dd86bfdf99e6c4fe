#!/usr/bin/env node
// `npm run demo:worker`: a GPU worker without a GPU, for developing a UI against the local
// deployment (docs/frontend.md). It speaks the worker protocol (docs/worker-protocol.md) with
// nothing but fetch: claim, heartbeat with progress, complete with a sample video.
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";

export const DEMO_VIDEO_URL =
  "https://storage.googleapis.com/gtv-videos-bucket/sample/ForBiggerBlazes.mp4";

const MAX_BACKOFF_MS = 30_000;

/** A refusal the worker cannot fix by waiting (wrong secret, a request the backend rejects). */
export class DemoWorkerError extends Error {}

/**
 * Claims and completes jobs until `signal` aborts (or, with `stopWhenIdle`, until no job is
 * queued). Returns the ids of the jobs it completed.
 * @param {import("./demo-worker.d.mts").DemoWorkerOptions} options
 */
export async function runDemoWorker(options) {
  const {
    siteUrl,
    secret,
    workerId = "demo-worker",
    steps = 5,
    stepMs = 1000,
    idleMs = 2000,
    stopWhenIdle = false,
    videoUrl = DEMO_VIDEO_URL,
    signal,
    log = console.log,
  } = options;
  const fetchFn = options.fetch ?? globalThis.fetch;
  const completed = [];
  let backoffMs = 0;

  const post = async (path, body) => {
    const response = await fetchFn(new URL(path, siteUrl).toString(), {
      method: "POST",
      headers: { Authorization: `Bearer ${secret}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    const json = text === "" ? null : JSON.parse(text);
    if (response.status === 401 || response.status === 400 || response.status === 415) {
      throw new DemoWorkerError(`${path}: ${response.status} ${json?.code}: ${json?.message}`);
    }
    return { status: response.status, json, retryAfter: response.headers.get("Retry-After") };
  };

  /** Waits before the next claim: the server's Retry-After, else doubling up to 30 s. */
  const backOff = async (reason, retryAfter) => {
    backoffMs = Math.min(MAX_BACKOFF_MS, Math.max(1000, backoffMs * 2));
    const wait =
      retryAfter !== null && /^\d+$/.test(retryAfter) ? Number(retryAfter) * 1000 : backoffMs;
    log(`${reason}; retrying in ${Math.round(wait / 1000)} s`);
    await sleep(wait, undefined, { signal }).catch(() => {});
  };

  /** One claimed job: progress heartbeats, then complete. false when the job was lost (409). */
  const render = async (job) => {
    const report = { jobId: job.jobId, workerId, attempt: job.attempt };
    for (let step = 1; step < steps; step++) {
      await sleep(stepMs, undefined, { signal }).catch(() => {});
      if (signal?.aborted) return false; // the lease runs out and the job is requeued
      const progress = Math.round((step / steps) * 100);
      const beat = await post("/worker/jobs/heartbeat", { ...report, progress });
      if (beat.status === 409) return false;
      if (beat.status === 200 && beat.json.upload) job.upload = beat.json.upload;
    }
    let completion = { ...report, r2Url: videoUrl };
    if (job.upload) {
      // Bucket mode: upload the sample video to the attempt's presigned PUT, then complete by key.
      const video = await fetchFn(videoUrl);
      const put = await fetchFn(job.upload.url, {
        method: job.upload.method,
        headers: job.upload.headers,
        body: await video.arrayBuffer(),
      });
      if (!put.ok) throw new DemoWorkerError(`Upload failed: ${put.status}`);
      completion = { ...report, key: job.upload.key };
    }
    const done = await post("/worker/jobs/complete", completion);
    return done.status === 200;
  };

  while (!signal?.aborted) {
    let claim;
    try {
      claim = await post("/worker/claim", { workerId });
    } catch (error) {
      if (error instanceof DemoWorkerError) throw error;
      await backOff(`Cannot reach ${siteUrl} (${error.message})`, null);
      continue;
    }
    if (claim.status === 204) {
      if (stopWhenIdle) break;
      await sleep(idleMs, undefined, { signal }).catch(() => {});
      continue;
    }
    if (claim.status !== 200) {
      await backOff(`Claim answered ${claim.status} ${claim.json?.code ?? ""}`, claim.retryAfter);
      continue;
    }
    backoffMs = 0;
    log(`Claimed ${claim.json.jobId} (attempt ${claim.json.attempt}): "${claim.json.prompt}"`);
    if (await render(claim.json)) {
      completed.push(claim.json.jobId);
      log(`Completed ${claim.json.jobId}`);
    } else {
      log(`Lost ${claim.json.jobId} (its lease passed or it was canceled); dropped it`);
    }
  }
  return completed;
}

/** The HTTP actions URL: CONVEX_SITE_URL, else derived from .env.local's CONVEX_URL. */
function defaultSiteUrl() {
  if (process.env.CONVEX_SITE_URL) return process.env.CONVEX_SITE_URL;
  let convexUrl = process.env.CONVEX_URL;
  try {
    convexUrl ??= /^CONVEX_URL=(.*)$/m.exec(readFileSync(".env.local", "utf8"))?.[1]?.trim();
  } catch {
    // No .env.local: npm run dev has not run here.
  }
  if (!convexUrl) return undefined;
  const url = new URL(convexUrl);
  if (url.hostname.endsWith(".convex.cloud")) {
    return convexUrl.replace(".convex.cloud", ".convex.site");
  }
  url.port = String(Number(url.port) + 1); // local backend: 3210 → 3211
  return url.origin;
}

const USAGE = `Usage: WORKER_SECRET=... npm run demo:worker -- [options]
  --site URL        the deployment's HTTP actions URL (default: CONVEX_SITE_URL, or .env.local's
                    CONVEX_URL with the port + 1, i.e. http://127.0.0.1:3211 for npm run dev)
  --worker-id ID    default demo-worker
  --steps N         heartbeats per job (default 5), --step-ms MS between them (default 1000)
  --once            stop when no job is queued
The deployment needs the same secret: npx convex env set WORKER_SECRET <secret>`;

async function main() {
  const args = process.argv.slice(2);
  const option = (name) => {
    const i = args.indexOf(name);
    return i === -1 ? undefined : args[i + 1];
  };
  if (args.includes("--help")) {
    console.log(USAGE);
    return;
  }
  const siteUrl = option("--site") ?? defaultSiteUrl();
  const secret = process.env.WORKER_SECRET;
  if (!siteUrl || !secret) {
    console.error(
      `${!siteUrl ? "No deployment found (run npm run dev first, or pass --site)." : "Set WORKER_SECRET."}\n\n${USAGE}`,
    );
    process.exitCode = 1;
    return;
  }
  const controller = new AbortController();
  process.once("SIGINT", () => controller.abort());
  console.log(`Demo worker on ${siteUrl}; Ctrl-C stops it.`);
  try {
    await runDemoWorker({
      siteUrl,
      secret,
      workerId: option("--worker-id"),
      steps: option("--steps") === undefined ? undefined : Number(option("--steps")),
      stepMs: option("--step-ms") === undefined ? undefined : Number(option("--step-ms")),
      stopWhenIdle: args.includes("--once"),
      signal: controller.signal,
    });
  } catch (error) {
    if (!(error instanceof DemoWorkerError)) throw error;
    console.error(error.message);
    process.exitCode = 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
