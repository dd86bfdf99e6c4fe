import { paginationOptsValidator, paginationResultValidator } from "convex/server";
import { v } from "convex/values";
import { internal } from "./_generated/api";
import { internalMutation, mutation, query } from "./_generated/server";
import { getCallerUser, requireCallerUser } from "./lib/auth";
import { appError } from "./lib/errors";
import { emptyPage, pageOptions, paginateChecked } from "./lib/pagination";
import { jobStatusValidator } from "./lib/validators";
import {
  createJob as createJobForUser,
  expireBatch,
  jobView,
  jobViewValidator,
  queuePosition,
  requireJob,
  transitionJob,
} from "./model/jobs";

/**
 * Starts a video job for the caller: validates, reserves `jobCost(durationSec)` credits and
 * queues the job, in one transaction. Retrying with the same `idempotencyKey` and the same
 * request returns the first job's id and charges nothing.
 */
export const createJob = mutation({
  args: {
    prompt: v.string(),
    imageUrl: v.optional(v.string()),
    durationSec: v.number(),
    seed: v.optional(v.number()),
    cfg: v.optional(v.number()),
    idempotencyKey: v.optional(v.string()),
    /** Seed-compatible; must be the caller's own id when given. */
    userId: v.optional(v.id("users")),
  },
  returns: v.id("jobs"),
  handler: async (ctx, { userId, ...input }) => {
    const user = await requireCallerUser(ctx);
    if (userId !== undefined && userId !== user._id) {
      throw appError("FORBIDDEN", "You can only create jobs for yourself.");
    }
    const { jobId } = await createJobForUser(ctx, user, input);
    return jobId;
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
    const job = await requireJob(ctx, jobId);
    if ((status === "canceled" || status === "expired") && job.status !== status) {
      throw appError(
        "INVALID_TRANSITION",
        status === "canceled"
          ? "Cancel with jobs:cancelJob."
          : "Jobs expire through jobs:expireOldJobs.",
      );
    }
    const result = await transitionJob(ctx, job, status, options);
    return { changed: result.changed, status: result.job.status };
  },
});

/**
 * One of the caller's jobs with its status, video URL, progress and, while queued, its place in
 * the queue. Another user's job (or a job that does not exist) is null: nobody can probe ids.
 */
export const getJob = query({
  args: { jobId: v.id("jobs") },
  returns: v.union(jobViewValidator, v.null()),
  handler: async (ctx, { jobId }) => {
    const user = await getCallerUser(ctx);
    const job = await ctx.db.get("jobs", jobId);
    if (user === null || job === null || job.userId !== user._id) {
      return null;
    }
    const view = jobView(job);
    return job.status === "queued"
      ? { ...view, queuePosition: await queuePosition(ctx, job) }
      : view;
  },
});

/** The caller's jobs, newest first; pages of at most 100 (works with `usePaginatedQuery`). */
export const listUserJobs = query({
  args: { userId: v.optional(v.id("users")), paginationOpts: paginationOptsValidator },
  returns: paginationResultValidator(jobViewValidator),
  handler: async (ctx, { userId, paginationOpts }) => {
    const user = await getCallerUser(ctx);
    if (userId !== undefined && userId !== user?._id) {
      throw appError("FORBIDDEN", "You can only list your own jobs.");
    }
    const page = pageOptions(paginationOpts);
    if (user === null) {
      return emptyPage<never>();
    }
    const result = await paginateChecked(
      ctx.db
        .query("jobs")
        .withIndex("by_userId", (q) => q.eq("userId", user._id))
        .order("desc"),
      page,
    );
    return { ...result, page: result.page.map(jobView) };
  },
});

/**
 * Cancels one of the caller's queued jobs and refunds its credits. Canceling it again changes
 * nothing; a job that a worker already started (or that finished) cannot be canceled.
 */
export const cancelJob = mutation({
  args: { jobId: v.id("jobs") },
  returns: v.object({ changed: v.boolean(), status: jobStatusValidator }),
  handler: async (ctx, { jobId }) => {
    const user = await requireCallerUser(ctx);
    const job = await ctx.db.get("jobs", jobId);
    if (job === null || job.userId !== user._id) {
      throw appError("NOT_FOUND", "Job not found.");
    }
    if (job.status !== "queued" && job.status !== "canceled") {
      throw appError("INVALID_TRANSITION", `A ${job.status} job cannot be canceled.`);
    }
    const result = await transitionJob(ctx, job, "canceled");
    return { changed: result.changed, status: result.job.status };
  },
});

/**
 * Hourly cron: done jobs past `expiresAt` become `expired` and lose their video URL. One
 * bounded batch per transaction; it schedules itself again while a backlog remains.
 */
export const expireOldJobs = internalMutation({
  args: {},
  returns: v.object({ expired: v.number(), more: v.boolean() }),
  handler: async (ctx) => {
    const result = await expireBatch(ctx, Date.now());
    if (result.more) {
      await ctx.scheduler.runAfter(0, internal.jobs.expireOldJobs, {});
    }
    return result;
  },
});
