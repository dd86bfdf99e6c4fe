import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import { isHttpsUrl } from "../lib/urls";
import type { CreditStatus, JobStatus } from "../lib/validators";
import { releaseHold, releaseJobCredits, settleHold, settleJobCredits } from "./credits";
import { releaseImage } from "./images";
import { scheduleDeletions } from "./videoDeletions";
import { requestVideoDeletions } from "./videos";

/**
 * A job's lifecycle once created (model/jobRequests.ts): the transition table and the one
 * function that moves a job along it, with the credits and media each move implies.
 */

/** How long a finished video stays downloadable unless the report says otherwise. */
export const VIDEO_TTL_MS = 24 * 60 * 60 * 1000;

/** Which status may follow which. Anything else is INVALID_TRANSITION. */
export const TRANSITIONS: Record<JobStatus, readonly JobStatus[]> = {
  queued: ["running", "failed", "canceled"],
  running: ["done", "failed", "queued"],
  done: ["expired"],
  failed: [],
  canceled: [],
  expired: [],
};

export type TransitionOptions = {
  r2Url?: string;
  expiresAt?: number;
  error?: string;
  /** Extra fields written with the transition (the worker API's lease and attempt fields). */
  patch?: Partial<Doc<"jobs">>;
  /** `done` with the video in the bucket at its final `key` (checked by a HEAD). */
  video?: { size: number; key: string };
  /**
   * Bucket objects this transition must delete are added here for the caller to schedule in
   * one action (the expiry batch); without it, the transition schedules its own.
   */
  deletions?: Array<Id<"videoDeletions">>;
};

/** Whole seconds: presigned URLs are dated and expire on whole seconds. */
const toSecond = (ms: number) => Math.floor(ms / 1000) * 1000;

// Written with `undefined` to remove a worker's claim from a job that no longer runs.
const NO_LEASE = { workerId: undefined, leaseExpiresAt: undefined } as const;
export const ERROR_MAX_LENGTH = 2000;

/**
 * The one way a job changes status. Applies the side effects of the target status in the same
 * transaction: `done` settles the credits and sets the video URL and its expiry; `failed` and
 * `canceled` refund; `queued` (a retry) keeps the hold; `expired` drops the video URL. (The
 * metrics rollups count outcomes through a trigger on `jobs`: model/metricsRollups.ts.)
 * Repeating the current status changes nothing.
 */
export async function transitionJob(
  ctx: MutationCtx,
  job: Doc<"jobs">,
  to: JobStatus,
  options: TransitionOptions = {},
): Promise<{ changed: boolean; job: Doc<"jobs"> }> {
  if (job.status === to) {
    return { changed: false, job };
  }
  if (!TRANSITIONS[job.status].includes(to)) {
    throw appError("INVALID_TRANSITION", `A ${job.status} job cannot become ${to}.`);
  }
  const now = Date.now();
  const error = options.error === undefined ? undefined : options.error.slice(0, ERROR_MAX_LENGTH);
  let patch: Partial<Doc<"jobs">>;
  switch (to) {
    case "running":
      patch = { status: to, startedAt: now };
      break;
    case "done": {
      if (options.video !== undefined) {
        if (job.videoKey === undefined) {
          throw appError(
            "CONFLICT",
            "This attempt has no video key: it was not claimed for upload.",
          );
        }
        // In the bucket, at the final key the upload was copied to: expires on a whole second,
        // exactly when its presigned GET does.
        patch = {
          status: to,
          r2Url: undefined,
          videoKey: options.video.key,
          videoBytes: options.video.size,
          expiresAt: toSecond(now) + VIDEO_TTL_MS,
          finishedAt: now,
          progress: 100,
          error: undefined,
          ...NO_LEASE,
        };
        break;
      }
      if (options.r2Url === undefined || !isHttpsUrl(options.r2Url)) {
        throw appError("INVALID_ARGUMENT", "r2Url must be an https:// URL when a job is done.");
      }
      const expiresAt = options.expiresAt ?? now + VIDEO_TTL_MS;
      if (!Number.isFinite(expiresAt) || expiresAt <= now) {
        throw appError("INVALID_ARGUMENT", "expiresAt must be a time in the future.");
      }
      patch = {
        status: to,
        r2Url: options.r2Url,
        expiresAt,
        finishedAt: now,
        progress: 100,
        error: undefined,
        ...NO_LEASE,
      };
      break;
    }
    case "failed":
      patch = { status: to, error: error ?? "The job failed.", finishedAt: now, ...NO_LEASE };
      break;
    case "canceled":
      patch = { status: to, finishedAt: now, ...NO_LEASE };
      break;
    case "queued":
      // A retry: back in line (keeping its place by createdAt) with its credits still held.
      patch = {
        status: to,
        error,
        progress: undefined,
        startedAt: undefined,
        videoKey: undefined,
        ...NO_LEASE,
      };
      break;
    case "expired":
      patch = { status: to, r2Url: undefined };
      break;
  }
  // The hold's fate is written with the status, in one write of the job.
  const held = job.creditStatus === "held";
  const settles = held && to === "done";
  const releases = held && (to === "failed" || to === "canceled");
  const creditStatus = settles ? "settled" : releases ? "refunded" : job.creditStatus;
  patch = { ...patch, ...options.patch, creditStatus };
  await ctx.db.patch("jobs", job._id, patch);
  if (settles) {
    await settleHold(ctx, job);
  } else if (releases) {
    await releaseHold(ctx, job);
  }
  const updated = (await ctx.db.get("jobs", job._id))!;
  // Media: the bucket objects the job no longer needs go (model/videos.ts), and so does the
  // input image once the job is final.
  const deletions = await requestVideoDeletions(ctx, job, to, now);
  if (options.deletions !== undefined) {
    options.deletions.push(...deletions);
  } else {
    await scheduleDeletions(ctx, deletions);
  }
  if (to === "done" || to === "failed" || to === "canceled") {
    await releaseImage(ctx, updated);
  }
  return { changed: true, job: updated };
}

export type CreditOutcome = { changed: boolean; creditStatus: CreditStatus };

/**
 * Settles a done job's open hold (operators' repair path: `done` settles on its own). A hold
 * already settled or refunded is left alone; a job that is not done cannot be settled.
 */
export async function settleJob(ctx: MutationCtx, job: Doc<"jobs">): Promise<CreditOutcome> {
  if (job.creditStatus !== "held") {
    return { changed: false, creditStatus: job.creditStatus };
  }
  if (job.status !== "done") {
    throw appError("INVALID_TRANSITION", `A ${job.status} job cannot be settled.`);
  }
  await settleJobCredits(ctx, job);
  return { changed: true, creditStatus: "settled" };
}

/**
 * Refunds a job's open hold; an unfinished job becomes `failed` (through `transitionJob`, which
 * refunds). A hold already settled or refunded is left alone: settled or refunded, never both.
 */
export async function refundJob(ctx: MutationCtx, job: Doc<"jobs">): Promise<CreditOutcome> {
  if (job.creditStatus !== "held") {
    return { changed: false, creditStatus: job.creditStatus };
  }
  if (job.status === "queued" || job.status === "running") {
    await transitionJob(ctx, job, "failed", { error: "Refunded by an operator." });
  } else {
    await releaseJobCredits(ctx, job);
  }
  return { changed: true, creditStatus: "refunded" };
}

export async function requireJob(ctx: QueryCtx, jobId: Id<"jobs">): Promise<Doc<"jobs">> {
  const job = await ctx.db.get("jobs", jobId);
  if (job === null) {
    throw appError("NOT_FOUND", "Job not found.");
  }
  return job;
}

export const EXPIRE_BATCH_SIZE = 200;

/** Expires one batch of done jobs past their `expiresAt`; says whether more may remain. */
export async function expireBatch(
  ctx: MutationCtx,
  now: number,
): Promise<{ expired: number; more: boolean }> {
  const due = await ctx.db
    .query("jobs")
    .withIndex("by_status_and_expiresAt", (q) => q.eq("status", "done").lte("expiresAt", now))
    .take(EXPIRE_BATCH_SIZE);
  // One deletion action for the whole batch, whatever the backlog: bounded per transaction.
  const deletions: Array<Id<"videoDeletions">> = [];
  for (const job of due) {
    await transitionJob(ctx, job, "expired", { deletions });
  }
  await scheduleDeletions(ctx, deletions);
  return { expired: due.length, more: due.length === EXPIRE_BATCH_SIZE };
}
