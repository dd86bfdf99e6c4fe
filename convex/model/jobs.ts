import { v, type Infer } from "convex/values";
import { doc } from "convex-helpers/validators";
import schema from "../schema";
import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { enforceRateLimit } from "../lib/rateLimits";
import { appError } from "../lib/errors";
import { hasControlCharacters, isBlank, isWellFormed } from "../lib/text";
import { URL_MAX_LENGTH, isHttpsUrl, isPublicHttpsUrl } from "../lib/urls";
import type { CreditStatus, JobStatus } from "../lib/validators";
import {
  releaseHold,
  releaseJobCredits,
  reserveJobCredits,
  settleHold,
  settleJobCredits,
} from "./credits";
import { releaseImage, useImage } from "./images";
import { scheduleDeletions } from "./videoDeletions";
import { requestVideoDeletions, videoUrl } from "./videos";

export const JOB_DURATIONS = [5, 10, 15] as const;
export const PROMPT_MAX_LENGTH = 2000;
export const IDEMPOTENCY_KEY_MAX_LENGTH = 128;
export const SEED_MAX = 4_294_967_295;
export const CFG_MIN = 1;
export const CFG_MAX = 20;
/** How long a finished video stays downloadable unless the report says otherwise. */
export const VIDEO_TTL_MS = 24 * 60 * 60 * 1000;
/** Queue positions are counted through the index up to this many jobs ahead. */
export const QUEUE_POSITION_CAP = 100;

/** The price of a job: one credit per second of video, on every plan. */
export function jobCost(durationSec: number): number {
  return durationSec;
}

export type JobInput = {
  prompt: string;
  imageUrl?: string;
  /** An image the caller uploaded to file storage (`jobs:generateImageUploadUrl`). */
  imageStorageId?: Id<"_storage">;
  durationSec: number;
  seed?: number;
  cfg?: number;
  idempotencyKey?: string;
};

function invalid(field: string, rule: string): never {
  throw appError("INVALID_ARGUMENT", `${field} ${rule}.`);
}

/** Checks every field of a job request; returns it normalised (prompt trimmed). */
export function validateJobInput(input: JobInput): JobInput {
  const prompt = input.prompt.trim();
  if (prompt.length === 0) invalid("prompt", "must not be empty");
  if (prompt.length > PROMPT_MAX_LENGTH) {
    invalid("prompt", `must be at most ${PROMPT_MAX_LENGTH} characters`);
  }
  // Zero-width spaces, bidi overrides and the like alone are as empty as spaces.
  if (isBlank(prompt)) invalid("prompt", "must not be empty (it has no visible characters)");
  if (!isWellFormed(prompt))
    invalid("prompt", "must be valid Unicode (it has an unpaired surrogate)");
  if (hasControlCharacters(prompt)) {
    invalid("prompt", "must not contain control characters (tabs and line breaks are fine)");
  }
  if (input.imageUrl !== undefined && !isPublicHttpsUrl(input.imageUrl)) {
    invalid(
      "imageUrl",
      `must be a public https:// URL of at most ${URL_MAX_LENGTH} characters, without credentials`,
    );
  }
  if (input.imageUrl !== undefined && input.imageStorageId !== undefined) {
    invalid("imageStorageId", "and imageUrl cannot both be given: pass one image");
  }
  if (!(JOB_DURATIONS as readonly number[]).includes(input.durationSec)) {
    invalid("durationSec", "must be 5, 10 or 15");
  }
  if (
    input.seed !== undefined &&
    !(Number.isInteger(input.seed) && input.seed >= 0 && input.seed <= SEED_MAX)
  ) {
    invalid("seed", `must be a whole number from 0 to ${SEED_MAX}`);
  }
  if (
    input.cfg !== undefined &&
    !(Number.isFinite(input.cfg) && input.cfg >= CFG_MIN && input.cfg <= CFG_MAX)
  ) {
    invalid("cfg", `must be a number from ${CFG_MIN} to ${CFG_MAX}`);
  }
  if (
    input.idempotencyKey !== undefined &&
    (input.idempotencyKey.length === 0 || input.idempotencyKey.length > IDEMPOTENCY_KEY_MAX_LENGTH)
  ) {
    invalid("idempotencyKey", `must be 1 to ${IDEMPOTENCY_KEY_MAX_LENGTH} characters`);
  }
  if (
    input.idempotencyKey !== undefined &&
    (!isWellFormed(input.idempotencyKey) || /[\p{Cc}]/u.test(input.idempotencyKey))
  ) {
    invalid("idempotencyKey", "must be valid Unicode without control characters");
  }
  return { ...input, prompt };
}

function sameRequest(job: Doc<"jobs">, input: JobInput): boolean {
  return (
    job.prompt === input.prompt &&
    job.imageUrl === input.imageUrl &&
    job.imageStorageId === input.imageStorageId &&
    job.durationSec === input.durationSec &&
    job.seed === input.seed &&
    job.cfg === input.cfg
  );
}

/**
 * Validates, reserves the job's price and inserts it as `queued`, all in the caller's
 * transaction. With an idempotency key already used by this user: the same request returns
 * the first job and charges nothing; a different request is a CONFLICT. The key is only taken
 * when the job commits, so a refused attempt leaves it free.
 */
export async function createJob(
  ctx: MutationCtx,
  user: Doc<"users">,
  rawInput: JobInput,
): Promise<{ jobId: Id<"jobs">; created: boolean }> {
  const input = validateJobInput(rawInput);
  if (input.idempotencyKey !== undefined) {
    const previous = await ctx.db
      .query("jobs")
      .withIndex("by_userId_and_idempotencyKey", (q) =>
        q.eq("userId", user._id).eq("idempotencyKey", input.idempotencyKey),
      )
      .unique();
    if (previous !== null) {
      if (!sameRequest(previous, input)) {
        throw appError(
          "CONFLICT",
          "idempotencyKey was already used for a different job request; use a new key.",
        );
      }
      return { jobId: previous._id, created: false };
    }
  }
  // After the idempotent replay above: a retry of a created job is never refused.
  await enforceRateLimit(
    ctx,
    "createJob",
    user._id,
    "Too many jobs started in a short time; try again shortly.",
  );
  if (input.imageStorageId !== undefined) {
    await useImage(ctx, user, input.imageStorageId, Date.now());
  }
  const cost = jobCost(input.durationSec);
  const jobId = await ctx.db.insert("jobs", {
    userId: user._id,
    prompt: input.prompt,
    imageUrl: input.imageUrl,
    imageStorageId: input.imageStorageId,
    durationSec: input.durationSec,
    seed: input.seed,
    cfg: input.cfg,
    idempotencyKey: input.idempotencyKey,
    creditsUsed: cost,
    status: "queued",
    creditStatus: "held",
    createdAt: Date.now(),
  });
  // INSUFFICIENT_CREDITS here rolls the insert back with everything else.
  await reserveJobCredits(ctx, (await ctx.db.get("jobs", jobId))!);
  return { jobId, created: true };
}

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

/** What the job's owner sees: the job without the worker's lease, plus its queue position. */
export const jobViewValidator = doc(schema, "jobs")
  .omit("workerId", "leaseExpiresAt", "videoKey")
  .extend({
    /** While queued: jobs ahead + 1; `atLeast` when more than the counting cap are ahead. */
    queuePosition: v.optional(v.object({ position: v.number(), atLeast: v.boolean() })),
  });
export type JobView = Infer<typeof jobViewValidator>;

export function jobView(job: Doc<"jobs">): JobView {
  const { workerId: _workerId, leaseExpiresAt: _leaseExpiresAt, videoKey: _key, ...view } = job;
  return view;
}

/**
 * `jobView` with the video's URL for its owner: a bucket video's presigned GET (valid until
 * `expiresAt`, computed from the job alone, so the query stays cached), else the stored URL.
 */
export async function ownerJobView(job: Doc<"jobs">): Promise<JobView> {
  const { r2Url: _stored, ...view } = jobView(job);
  const r2Url = await videoUrl(job);
  return r2Url === undefined ? view : { ...view, r2Url };
}

/**
 * Counts the queued jobs ahead of this one (the order workers claim in: `by_status`, i.e.
 * createdAt, then creation time) through the index, reading at most the cap.
 *
 * It reads the jobs *immediately* ahead (descending from this job's own index key), not the
 * head of the queue: a live `getJob` subscription then depends only on the index range between
 * this job and the cap-th job ahead of it. A claim (which takes the head) changes that range
 * only for the jobs at most the cap behind the head, so it re-runs at most cap + 1 `getJob`
 * subscriptions however long the queue is (reading from the head, every queued job's
 * subscription held the head and re-ran on every claim).
 */
export async function queuePosition(
  ctx: QueryCtx,
  job: Doc<"jobs">,
): Promise<{ position: number; atLeast: boolean }> {
  // Jobs created in the same millisecond are ordered by creation time, the index's last key.
  const sameMillisecond = await ctx.db
    .query("jobs")
    .withIndex("by_status", (q) =>
      q
        .eq("status", "queued")
        .eq("createdAt", job.createdAt)
        .lt("_creationTime", job._creationTime),
    )
    .order("desc")
    .take(QUEUE_POSITION_CAP);
  let ahead = sameMillisecond.length;
  if (ahead < QUEUE_POSITION_CAP) {
    const earlier = await ctx.db
      .query("jobs")
      .withIndex("by_status", (q) => q.eq("status", "queued").lt("createdAt", job.createdAt))
      .order("desc")
      .take(QUEUE_POSITION_CAP - ahead);
    ahead += earlier.length;
  }
  return { position: ahead + 1, atLeast: ahead === QUEUE_POSITION_CAP };
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
