import { internal } from "./_generated/api";
import { httpAction } from "./_generated/server";
import { appError } from "./lib/errors";
import { R2Error, type ObjectHead } from "./lib/r2";
import { copyUploadToFinalKey, videoBucket } from "./model/videos";
import {
  checkBearerSecret,
  type JsonObject,
  jsonResponse,
  noContentResponse,
  optionalBoolean,
  optionalNumber,
  optionalString,
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

/**
 * Bucket mode adds `upload` (where to PUT the video) to the claim and heartbeat replies; in
 * development mode those replies are as they always were.
 *
 * Optional fields are `null` rather than missing, which is easier on Python workers. */
/** The fields every report names: the job, the worker, and the attempt the claim returned. */
function reportOf(body: JsonObject) {
  return {
    jobId: requireString(body, "jobId"),
    workerId: requireString(body, "workerId"),
    attempt: optionalNumber(body, "attempt"),
  };
}

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
    ...reportOf(body),
    progress: optionalNumber(body, "progress"),
  });
  return jsonResponse(200, {
    ...result,
    status: "running",
    progress: orNull(result.progress),
  });
});

/**
 * `POST /worker/jobs/complete` → 200 `{ changed, expiresAt }`. Development mode:
 * `{ jobId, workerId, attempt?, r2Url }`. Bucket mode: `{ jobId, workerId, attempt?, key? }`,
 * and the attempt's upload is HEADed and copied to its final key here first (model/videos.ts):
 * a missing, empty, oversized or non-mp4 object is a 409 that changes nothing.
 */
export const complete = workerRoute(async (ctx, request) => {
  const body = await readJsonObject(request);
  const bucket = videoBucket();
  const report = {
    ...reportOf(body),
  };
  let completion;
  if (bucket === null) {
    completion = {
      ...report,
      r2Url: requireString(body, "r2Url"),
      key: optionalString(body, "key"),
    };
  } else {
    const r2Url = optionalString(body, "r2Url");
    const key = optionalString(body, "key");
    let object: ObjectHead | undefined;
    const target = await ctx.runQuery(internal.worker.completionTarget, {
      jobId: report.jobId,
    });
    if (target !== null && r2Url === undefined) {
      try {
        object = await copyUploadToFinalKey(bucket, target);
      } catch (error) {
        if (!(error instanceof R2Error)) throw error;
        console.error("Checking an uploaded video failed", error.message);
        throw appError(
          "UNAVAILABLE",
          "The video bucket cannot be reached right now; complete again later.",
        );
      }
    }
    completion = { ...report, r2Url, key, object };
  }
  const result = await ctx.runMutation(internal.worker.completeJob, completion);
  return jsonResponse(200, { ...result, status: "done", expiresAt: orNull(result.expiresAt) });
});

/** `POST /worker/jobs/fail` `{ jobId, workerId, attempt?, error, retryable? }` → 200 with the outcome. */
export const fail = workerRoute(async (ctx, request) => {
  const body = await readJsonObject(request);
  const result = await ctx.runMutation(internal.worker.failJob, {
    ...reportOf(body),
    error: requireString(body, "error"),
    retryable: optionalBoolean(body, "retryable"),
  });
  return jsonResponse(200, result);
});
