import { internal } from "./_generated/api";
import { httpAction } from "./_generated/server";
import {
  checkBearerSecret,
  jsonResponse,
  noContentResponse,
  optionalBoolean,
  optionalNumber,
  readJsonObject,
  requireString,
  withJsonErrors,
} from "./lib/http";

/**
 * HTTP handlers of the GPU worker API (routed in `convex/http.ts`). Each one checks
 * `Authorization: Bearer <WORKER_SECRET>` before reading the body (an unset or unusable secret,
 * or any error while checking, is a 503 that runs nothing), checks the body's field
 * types, then runs one internal mutation from `convex/worker.ts`. Errors are JSON
 * `{ code, message }` with the status of their code (see `convex/lib/http.ts`).
 */

type Handler = Parameters<typeof httpAction>[0];

function workerRoute(handler: Handler) {
  return httpAction(async (ctx, request) => {
    // Fail-closed: only an explicit null (the secret matched) reaches the handler.
    const refused = await checkBearerSecret(
      request,
      () => process.env.WORKER_SECRET,
      "WORKER_SECRET",
    );
    if (refused !== null) {
      return refused;
    }
    return await withJsonErrors(() => handler(ctx, request));
  });
}

/** Optional fields are `null` rather than missing, which is easier on Python workers. */
function orNull<T>(value: T | undefined): T | null {
  return value === undefined ? null : value;
}

/** `POST /worker/claim` `{ workerId }` → 200 with the claimed job, or 204 when none is queued. */
export const claim = workerRoute(async (ctx, request) => {
  const body = await readJsonObject(request);
  const workerId = requireString(body, "workerId");
  const job = await ctx.runMutation(internal.worker.claimJob, { workerId });
  if (job === null) {
    return noContentResponse();
  }
  return jsonResponse(200, {
    ...job,
    imageUrl: orNull(job.imageUrl),
    seed: orNull(job.seed),
    cfg: orNull(job.cfg),
  });
});

/**
 * `POST /worker/jobs/heartbeat` `{ jobId, workerId, attempt?, progress? }` → 200 with the new
 * lease. `attempt` (on every report) is the claim's; a report for another attempt is a 409.
 */
export const heartbeat = workerRoute(async (ctx, request) => {
  const body = await readJsonObject(request);
  const result = await ctx.runMutation(internal.worker.heartbeat, {
    jobId: requireString(body, "jobId"),
    workerId: requireString(body, "workerId"),
    attempt: optionalNumber(body, "attempt"),
    progress: optionalNumber(body, "progress"),
  });
  return jsonResponse(200, { ...result, status: "running", progress: orNull(result.progress) });
});

/** `POST /worker/jobs/complete` `{ jobId, workerId, attempt?, r2Url }` → 200 `{ changed, expiresAt }`. */
export const complete = workerRoute(async (ctx, request) => {
  const body = await readJsonObject(request);
  const result = await ctx.runMutation(internal.worker.completeJob, {
    jobId: requireString(body, "jobId"),
    workerId: requireString(body, "workerId"),
    attempt: optionalNumber(body, "attempt"),
    r2Url: requireString(body, "r2Url"),
  });
  return jsonResponse(200, { ...result, status: "done", expiresAt: orNull(result.expiresAt) });
});

/** `POST /worker/jobs/fail` `{ jobId, workerId, attempt?, error, retryable? }` → 200 with the outcome. */
export const fail = workerRoute(async (ctx, request) => {
  const body = await readJsonObject(request);
  const result = await ctx.runMutation(internal.worker.failJob, {
    jobId: requireString(body, "jobId"),
    workerId: requireString(body, "workerId"),
    attempt: optionalNumber(body, "attempt"),
    error: requireString(body, "error"),
    retryable: optionalBoolean(body, "retryable"),
  });
  return jsonResponse(200, result);
});
