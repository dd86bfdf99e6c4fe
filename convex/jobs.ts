import {
  paginationOptsValidator,
  paginationResultValidator,
  type PaginationOptions,
} from "convex/server";
import { v } from "convex/values";
import type { Doc } from "./_generated/dataModel";
import type { QueryCtx } from "./_generated/server";
import { appError } from "./lib/errors";
import {
  internalMutation,
  maybeUserQuery,
  maybeUserQueryWithUserId,
  userMutation,
  userMutationWithUserId,
} from "./lib/functions";
import { sweepMutation } from "./lib/sweeps";
import { firstPage, pageOfUserRows } from "./lib/pagination";
import { enforceRateLimit } from "./lib/rateLimits";
import { jobStatusValidator } from "./lib/validators";
import * as ImageUploads from "./model/imageUploads";
import * as Jobs from "./model/jobs";
import * as JobRequests from "./model/jobRequests";
import * as JobViews from "./model/jobViews";

/**
 * Starts a video job for the caller: validates, reserves `jobCost(durationSec)` credits and
 * queues the job, in one transaction. Retrying with the same `idempotencyKey` and the same
 * request returns the first job's id and charges nothing.
 */
export const createJob = userMutationWithUserId({
  args: {
    prompt: v.string(),
    imageUrl: v.optional(v.string()),
    imageStorageId: v.optional(v.id("_storage")),
    durationSec: v.number(),
    seed: v.optional(v.number()),
    cfg: v.optional(v.number()),
    idempotencyKey: v.optional(v.string()),
  },
  returns: v.id("jobs"),
  handler: async (ctx, input) => (await JobRequests.createJob(ctx, ctx.user, input)).jobId,
});

/**
 * A single-use upload URL for a job's input image (valid for an hour), on this deployment's
 * upload route (model/imageUploads.ts): the browser POSTs the file to it with its Content-Type
 * and gets `{ storageId }` for `createJob({ imageStorageId })`. The upload is the caller's from
 * then on, checked as it is read (PNG, JPEG or WebP, at most 10 MiB). Limited per user, in bursts
 * and per day, and to `IMAGE_UPLOADS_UNUSED_MAX` uploads and URLs no job used yet
 * (lib/rateLimits.ts): RATE_LIMITED with `retryAfter`.
 */
export const generateImageUploadUrl = userMutation({
  args: {},
  returns: v.string(),
  handler: async (ctx) => {
    const message = "Too many image upload URLs requested; try again later.";
    await enforceRateLimit(ctx, "imageUploadUrl", ctx.user._id, message);
    await enforceRateLimit(ctx, "imageUploadUrlDaily", ctx.user._id, message);
    return await ImageUploads.grantImageUpload(ctx, ctx.user, Date.now());
  },
});

/**
 * Moves a job to another status with its side effects (settle on done, refund on failed).
 * Operators reach it through `npx convex run`; GPU workers report through the HTTP worker API
 * (`convex/worker.ts`), which changes status through the same `transitionJob`.
 * Cancel with `jobs:cancelJob`; expiry is the cron's job.
 */
export const updateJobStatus = internalMutation({
  args: {
    jobId: v.id("jobs"),
    status: jobStatusValidator,
    r2Url: v.optional(v.string()),
    expiresAt: v.optional(v.number()),
    error: v.optional(v.string()),
  },
  returns: v.object({ changed: v.boolean(), status: jobStatusValidator }),
  handler: async (ctx, { jobId, status, ...options }) => {
    const job = await Jobs.requireJob(ctx, jobId);
    if ((status === "canceled" || status === "expired") && job.status !== status) {
      throw appError(
        "INVALID_TRANSITION",
        status === "canceled"
          ? "Cancel with jobs:cancelJob."
          : "Jobs expire through jobs:expireOldJobs.",
      );
    }
    const result = await Jobs.transitionJob(ctx, job, status, options);
    return { changed: result.changed, status: result.job.status };
  },
});

/**
 * One of the caller's jobs with its status, video URL, progress and, while queued, its place in
 * the queue. Another user's job (or a job that does not exist) is null: nobody can probe ids.
 */
export const getJob = maybeUserQuery({
  args: { jobId: v.id("jobs") },
  returns: v.union(JobViews.jobViewValidator, v.null()),
  handler: async (ctx, { jobId }) => {
    const job = await ctx.db.get("jobs", jobId);
    if (ctx.user === null || job === null || job.userId !== ctx.user._id) {
      return null;
    }
    const view = await JobViews.ownerJobView(job);
    return job.status === "queued"
      ? { ...view, queuePosition: await JobViews.queuePosition(ctx, job) }
      : view;
  },
});

const jobPageValidator = paginationResultValidator(JobViews.jobViewValidator);

/** One page of the caller's jobs, newest first, as the owner sees them. */
async function pageOfJobs(ctx: QueryCtx, user: Doc<"users"> | null, page: PaginationOptions) {
  const result = await pageOfUserRows(ctx, "jobs", user, page);
  return { ...result, page: await Promise.all(result.page.map(JobViews.ownerJobView)) };
}

/**
 * The caller's jobs, newest first, pages of at most 100: the list for
 * `usePaginatedQuery(api.jobs.listJobs, {}, { initialNumItems })`.
 */
export const listJobs = maybeUserQuery({
  args: { paginationOpts: paginationOptsValidator },
  returns: jobPageValidator,
  handler: async (ctx, { paginationOpts }) => await pageOfJobs(ctx, ctx.user, paginationOpts),
});

/**
 * The spec's `listUserJobs(userId, limit?)`: the caller's newest `limit` jobs (default 20, at
 * most 100) in the paginated shape; with `paginationOpts` instead, one page like `listJobs`
 * (whose `paginationOpts` is required, as `usePaginatedQuery` needs).
 */
export const listUserJobs = maybeUserQueryWithUserId({
  args: { paginationOpts: v.optional(paginationOptsValidator), limit: v.optional(v.number()) },
  returns: jobPageValidator,
  handler: async (ctx, { paginationOpts, limit }) => {
    if (paginationOpts !== undefined && limit !== undefined) {
      throw appError("INVALID_ARGUMENT", "Pass either paginationOpts or limit, not both.");
    }
    return await pageOfJobs(ctx, ctx.user, paginationOpts ?? firstPage(limit));
  },
});

/**
 * Cancels one of the caller's queued jobs and refunds its credits. Canceling it again changes
 * nothing; a job that a worker already started (or that finished) cannot be canceled.
 */
export const cancelJob = userMutation({
  args: { jobId: v.id("jobs") },
  returns: v.object({ changed: v.boolean(), status: jobStatusValidator }),
  handler: async (ctx, { jobId }) => {
    const job = await ctx.db.get("jobs", jobId);
    if (job === null || job.userId !== ctx.user._id) {
      throw appError("NOT_FOUND", "Job not found.");
    }
    if (job.status !== "queued" && job.status !== "canceled") {
      throw appError("INVALID_TRANSITION", `A ${job.status} job cannot be canceled.`);
    }
    const result = await Jobs.transitionJob(ctx, job, "canceled");
    return { changed: result.changed, status: result.job.status };
  },
});

/**
 * Hourly cron: done jobs past `expiresAt` become `expired` and lose their video URL. One
 * bounded batch per transaction; it schedules itself again while a backlog remains.
 */
export const expireOldJobs = sweepMutation({
  name: "jobs:expireOldJobs",
  returns: v.object({ expired: v.number(), more: v.boolean() }),
  batch: (ctx, now) => Jobs.expireBatch(ctx, now),
});
