import { v } from "convex/values";
import { appError } from "./lib/errors";
import { internalQuery } from "./_generated/server";
import * as Videos from "./model/videos";
import * as Worker from "./model/worker";
import * as Reports from "./model/workerReports";
import * as Sweeps from "./model/workerSweeps";
import { internalMutation } from "./lib/functions";
import { sweepMutation } from "./lib/sweeps";

/**
 * The GPU worker API's mutations. Workers reach them through the authenticated HTTP routes in
 * `convex/http.ts` (see `convex/workerHttp.ts`); operators can call them with `npx convex run`.
 * Job ids arrive as strings from HTTP, so an unknown or malformed id is a NOT_FOUND, not a
 * validation failure. The lease length, attempt limit and queue timeout come from the
 * environment (see `Worker.workerConfig`). Reports take the `attempt` the claim returned (optional for
 * workers written before it): a report for any other attempt is a CONFLICT that changes nothing.
 */

/** The claim's `attempt`, which fences a report to that attempt. */
const attempt = v.optional(v.number());

/** Bucket mode: where the worker PUTs the attempt's video, until the lease ends. */
const uploadValidator = v.object({
  method: v.literal("PUT"),
  url: v.string(),
  key: v.string(),
  headers: v.object({ "Content-Type": v.string() }),
  expiresAt: v.number(),
});

const claimedJobValidator = v.object({
  jobId: v.id("jobs"),
  prompt: v.string(),
  imageUrl: v.optional(v.string()),
  durationSec: v.number(),
  seed: v.optional(v.number()),
  cfg: v.optional(v.number()),
  attempt: v.number(),
  maxAttempts: v.number(),
  leaseExpiresAt: v.number(),
  upload: v.optional(uploadValidator),
});

/**
 * Claims the oldest claimable queued job for `workerId`, or returns null when there is none.
 * Jobs past their queue timeout or out of attempts are never handed out (see `Worker.claimNextJob`).
 */
export const claimJob = internalMutation({
  args: { workerId: v.string() },
  returns: v.union(claimedJobValidator, v.null()),
  handler: async (ctx, { workerId }) => {
    return await Worker.claimNextJob(
      ctx,
      workerId,
      Date.now(),
      Worker.workerConfig(),
      Videos.videoBucket(),
    );
  },
});

/** Extends the worker's lease on the job and records its progress (0–100). */
export const heartbeat = internalMutation({
  args: {
    jobId: v.string(),
    workerId: v.string(),
    attempt,
    progress: v.optional(v.number()),
  },
  returns: v.object({
    jobId: v.id("jobs"),
    leaseExpiresAt: v.number(),
    progress: v.optional(v.number()),
    upload: v.optional(uploadValidator),
  }),
  handler: async (ctx, report) => {
    return await Reports.heartbeat(
      ctx,
      report,
      Date.now(),
      Worker.workerConfig(),
      Videos.videoBucket(),
    );
  },
});

/**
 * The keys a completion of this running job works on (bucket mode: the HTTP action HEADs the
 * attempt's upload and copies it to the final key before `completeJob`), or null when there is
 * nothing to check (the job is not running, or its attempt has no upload key): `completeJob`
 * then answers alone. Unknown and malformed ids are NOT_FOUND.
 */
export const completionTarget = internalQuery({
  args: { jobId: v.string() },
  returns: v.union(v.null(), v.object({ uploadKey: v.string(), finalKey: v.string() })),
  handler: async (ctx, { jobId }) => {
    const id = ctx.db.normalizeId("jobs", jobId);
    const job = id === null ? null : await ctx.db.get("jobs", id);
    if (job === null) {
      throw appError("NOT_FOUND", "Job not found.");
    }
    if (job.status !== "running" || job.videoKey === undefined) {
      return null;
    }
    return {
      uploadKey: job.videoKey,
      finalKey: Videos.finalVideoKeyFor(job._id, job.attempt ?? 0),
    };
  },
});

/** What a HEAD found (bucket mode; passed by the HTTP action, see `completeJob`). */
const objectHeadValidator = v.union(
  v.object({ key: v.string(), exists: v.literal(false) }),
  v.object({
    key: v.string(),
    exists: v.literal(true),
    size: v.number(),
    contentType: v.union(v.string(), v.null()),
    etag: v.union(v.string(), v.null()),
  }),
);

/**
 * Marks the worker's job done with its video and settles its credits; repeats change nothing.
 * Development mode: `r2Url` (https). Bucket mode: `object`, the HEAD of the attempt's key that
 * `POST /worker/jobs/complete` made (operators running this by hand pass what they checked).
 */
export const completeJob = internalMutation({
  args: {
    jobId: v.string(),
    workerId: v.string(),
    attempt,
    r2Url: v.optional(v.string()),
    key: v.optional(v.string()),
    object: v.optional(objectHeadValidator),
  },
  returns: v.object({
    jobId: v.id("jobs"),
    changed: v.boolean(),
    expiresAt: v.optional(v.number()),
  }),
  handler: async (ctx, report) => {
    return await Reports.completeJob(ctx, report, Date.now(), Videos.videoBucket());
  },
});

/** Reports the worker's job failed: requeued if retryable with attempts left, else refunded. */
export const failJob = internalMutation({
  args: {
    jobId: v.string(),
    workerId: v.string(),
    attempt,
    error: v.string(),
    retryable: v.optional(v.boolean()),
  },
  returns: v.object({
    jobId: v.id("jobs"),
    changed: v.boolean(),
    status: v.union(v.literal("queued"), v.literal("failed")),
    attempt: v.number(),
    retrying: v.boolean(),
  }),
  handler: async (ctx, report) => {
    return await Reports.failJob(ctx, report, Date.now(), Worker.workerConfig());
  },
});

/**
 * Cron (every minute): running jobs whose lease passed are requeued while attempts remain,
 * otherwise failed and refunded. One bounded batch per transaction; it schedules itself again
 * while a backlog remains.
 */
export const sweepExpiredLeases = sweepMutation({
  name: "worker:sweepExpiredLeases",
  returns: v.object({ requeued: v.number(), failed: v.number(), more: v.boolean() }),
  batch: (ctx, now) => Sweeps.sweepExpiredLeases(ctx, now, Worker.workerConfig()),
});

/**
 * Cron (every minute): jobs still queued QUEUE_TIMEOUT_MS after creation are failed and
 * refunded. One bounded batch per transaction; it schedules itself again while a backlog remains.
 */
export const sweepQueueTimeouts = sweepMutation({
  name: "worker:sweepQueueTimeouts",
  returns: v.object({ failed: v.number(), more: v.boolean() }),
  batch: (ctx, now) => Sweeps.sweepQueueTimeouts(ctx, now, Worker.workerConfig()),
});
