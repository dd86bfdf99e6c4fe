import type { Doc, Id } from "../_generated/dataModel";
import { internal } from "../_generated/api";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import {
  VIDEO_CONTENT_TYPE,
  VIDEO_MAX_BYTES,
  presign,
  r2Setting,
  videoKeyFor,
  type ObjectHead,
  type Presigned,
  type R2Config,
} from "../lib/r2";

/**
 * Media: input images in Convex file storage, videos in the private bucket.
 *
 * Images. The browser uploads to a URL from `jobs:generateImageUploadUrl` and passes the storage
 * id to `createJob`. The first job that uses an upload records who owns it (`imageUploads`);
 * from then on only that user can use it, and for anyone else it does not exist (NOT_FOUND).
 * The file is checked through its `_storage` metadata (content type, size). When a job reaches
 * a final status its image is deleted, unless another unfinished job still uses it.
 *
 * Videos (R2 configured). A claim decides the attempt's object key and hands the worker a
 * presigned PUT for it; the completion HEADs that key (from the HTTP action) and the job is done
 * only if the object is there, non-empty, within `VIDEO_MAX_BYTES` and `video/mp4`. The owner
 * reads it through a presigned GET dated at the job's finish and valid exactly until
 * `expiresAt` (see `videoUrl`). Objects that must go (an expired video, a failed, canceled or
 * retried attempt's upload) get a `videoDeletions` row; an action deletes them and a bounded
 * sweep retries what failed.
 */

export const IMAGE_CONTENT_TYPES = ["image/png", "image/jpeg", "image/webp"] as const;
export const IMAGE_MAX_BYTES = 10 * 1024 * 1024;

/** The video setting for workers: R2's config, null in development mode; broken: UNAVAILABLE. */
export function videoBucket(): R2Config | null {
  const setting = r2Setting();
  if (setting.kind === "broken") {
    console.error(`R2 is misconfigured (${setting.reason}); worker routes answer 503.`);
    throw appError(
      "UNAVAILABLE",
      "The video bucket is misconfigured (R2_* variables); see the deployment logs.",
    );
  }
  return setting.kind === "on" ? setting.config : null;
}

// ---------------------------------------------------------------------------------------------
// Images

const NO_SUCH_IMAGE = "imageStorageId names no image of yours.";

/**
 * The image `storageId` for a new job of `user`: it must exist, be the user's (or nobody's
 * yet: then it becomes the user's) and be a PNG, JPEG or WebP of at most 10 MiB according to
 * its `_storage` metadata. Another user's image is NOT_FOUND, like a deleted one.
 */
export async function useImage(
  ctx: MutationCtx,
  user: Doc<"users">,
  storageId: Id<"_storage">,
): Promise<void> {
  const file = await ctx.db.system.get("_storage", storageId);
  if (file === null) {
    throw appError("NOT_FOUND", NO_SUCH_IMAGE);
  }
  const upload = await ctx.db
    .query("imageUploads")
    .withIndex("by_storageId", (q) => q.eq("storageId", storageId))
    .unique();
  if (upload !== null && upload.userId !== user._id) {
    throw appError("NOT_FOUND", NO_SUCH_IMAGE);
  }
  const type = (file.contentType ?? "").split(";")[0].trim().toLowerCase();
  if (!(IMAGE_CONTENT_TYPES as readonly string[]).includes(type)) {
    throw appError(
      "INVALID_ARGUMENT",
      `imageStorageId must be a PNG, JPEG or WebP image (the file is ${file.contentType ?? "of no declared type"}).`,
    );
  }
  if (!(file.size > 0 && file.size <= IMAGE_MAX_BYTES)) {
    throw appError(
      "INVALID_ARGUMENT",
      `imageStorageId must be an image of 1 byte to 10 MiB (the file has ${file.size} bytes).`,
    );
  }
  if (upload === null) {
    await ctx.db.insert("imageUploads", { storageId, userId: user._id, createdAt: Date.now() });
  }
}

const UNFINISHED = ["queued", "running"] as const;

/**
 * After `job` reached a final status: deletes its uploaded image from storage (and the
 * ownership record) unless another unfinished job still uses it.
 */
export async function releaseImage(ctx: MutationCtx, job: Doc<"jobs">): Promise<void> {
  const storageId = job.imageStorageId;
  if (storageId === undefined) {
    return;
  }
  for (const status of UNFINISHED) {
    const user = await ctx.db
      .query("jobs")
      .withIndex("by_imageStorageId_and_status", (q) =>
        q.eq("imageStorageId", storageId).eq("status", status),
      )
      .first();
    if (user !== null && user._id !== job._id) {
      return;
    }
  }
  if ((await ctx.db.system.get("_storage", storageId)) !== null) {
    await ctx.storage.delete(storageId);
  }
  const upload = await ctx.db
    .query("imageUploads")
    .withIndex("by_storageId", (q) => q.eq("storageId", storageId))
    .unique();
  if (upload !== null) {
    await ctx.db.delete("imageUploads", upload._id);
  }
}

/** The URL a worker downloads the job's input image from (null if there is none). */
export async function imageUrlForWorker(
  ctx: QueryCtx,
  job: Doc<"jobs">,
): Promise<string | undefined> {
  if (job.imageStorageId !== undefined) {
    return (await ctx.storage.getUrl(job.imageStorageId)) ?? undefined;
  }
  return job.imageUrl;
}

// ---------------------------------------------------------------------------------------------
// Videos: upload, check, read

export type VideoUpload = {
  method: "PUT";
  url: string;
  key: string;
  headers: { "Content-Type": string };
  expiresAt: number;
};

export { videoKeyFor };

/** The presigned PUT for the attempt's key, valid from `now` until the lease ends. */
export async function uploadFor(
  config: R2Config,
  key: string,
  now: number,
  leaseExpiresAt: number,
): Promise<VideoUpload> {
  const headers = { "Content-Type": VIDEO_CONTENT_TYPE };
  const { url, expiresAt } = await presign(config, "PUT", key, now, leaseExpiresAt, headers);
  return { method: "PUT", url, key, headers, expiresAt };
}

/**
 * What the completion's HEAD found, as a refusal (CONFLICT, nothing changes) unless it is a
 * video the job can be done with.
 */
export function checkUploadedVideo(object: ObjectHead): { size: number } {
  const where = `at key ${object.key}`;
  if (!object.exists) {
    throw appError(
      "CONFLICT",
      `No video was uploaded ${where}: PUT it to the claim's upload URL (Content-Type: ${VIDEO_CONTENT_TYPE}), then complete.`,
    );
  }
  if (!(object.size > 0)) {
    throw appError("CONFLICT", `The video ${where} is empty: upload it again, then complete.`);
  }
  if (object.size > VIDEO_MAX_BYTES) {
    throw appError(
      "CONFLICT",
      `The video ${where} has ${object.size} bytes, more than the ${VIDEO_MAX_BYTES} allowed.`,
    );
  }
  const type = (object.contentType ?? "").split(";")[0].trim().toLowerCase();
  if (type !== VIDEO_CONTENT_TYPE) {
    throw appError(
      "CONFLICT",
      `The object ${where} is ${object.contentType ?? "of no content type"}, not ${VIDEO_CONTENT_TYPE}: upload it again with Content-Type: ${VIDEO_CONTENT_TYPE}.`,
    );
  }
  return { size: object.size };
}

/**
 * The owner's URL for a done job's video. Bucket videos get a presigned GET dated at the job's
 * `finishedAt` and valid until its `expiresAt` (never longer): the same job always gives the
 * same URL, so `getJob` stays a cached, reactive query that reads no clock, and the link stops
 * working when the video expires. Videos reported as URLs (development mode, operators) are
 * returned as stored.
 */
export async function videoUrl(job: Doc<"jobs">): Promise<string | undefined> {
  if (
    job.status !== "done" ||
    job.videoKey === undefined ||
    job.videoBytes === undefined ||
    job.finishedAt === undefined ||
    job.expiresAt === undefined
  ) {
    return job.r2Url;
  }
  const setting = r2Setting();
  if (setting.kind !== "on") {
    return undefined;
  }
  const signed: Presigned = await presign(
    setting.config,
    "GET",
    job.videoKey,
    job.finishedAt,
    job.expiresAt,
  );
  return signed.url;
}

// ---------------------------------------------------------------------------------------------
// Videos: deletion

export type DeletionReason = Doc<"videoDeletions">["reason"];

/** How long a scheduled deletion may take before the sweep retries it. */
export const DELETION_FIRST_RETRY_MS = 10 * 60 * 1000;
const DELETION_MAX_BACKOFF_MS = 6 * 60 * 60 * 1000;
/** Deletions per action (one action per expiry batch) and per sweep transaction. */
export const DELETION_BATCH_SIZE = 200;

/** When a deletion that failed `attempts` times is tried again: 10 min, 20, 40, … up to 6 h. */
export function nextDeletionAttempt(now: number, attempts: number): number {
  const backoff = DELETION_FIRST_RETRY_MS * 2 ** Math.max(0, Math.min(attempts - 1, 10));
  return now + Math.min(backoff, DELETION_MAX_BACKOFF_MS);
}

/**
 * Records that `key` (an object of `job`) must be deleted. The caller schedules the deletion
 * (`scheduleDeletions`), one action for a whole batch; if that action never succeeds, the
 * sweep tries again from `nextAttemptAt`.
 */
export async function requestDeletion(
  ctx: MutationCtx,
  job: Doc<"jobs">,
  key: string,
  reason: DeletionReason,
  now: number,
): Promise<Id<"videoDeletions">> {
  return await ctx.db.insert("videoDeletions", {
    jobId: job._id,
    key,
    reason,
    attempts: 0,
    nextAttemptAt: now + DELETION_FIRST_RETRY_MS,
    createdAt: now,
  });
}

/** One action that deletes these objects (at most `DELETION_BATCH_SIZE`). */
export async function scheduleDeletions(
  ctx: MutationCtx,
  deletionIds: Array<Id<"videoDeletions">>,
): Promise<void> {
  if (deletionIds.length > 0) {
    await ctx.scheduler.runAfter(0, internal.media.deleteVideoObjects, { deletionIds });
  }
}

/**
 * The outcome of one deletion action: deleted rows go (and their job records `videoDeletedAt`
 * when the object was its own video); failed ones wait for their next attempt.
 */
export async function recordDeletions(
  ctx: MutationCtx,
  outcome: {
    deleted: Array<Id<"videoDeletions">>;
    failed: Array<{ id: Id<"videoDeletions">; error: string }>;
  },
  now: number,
): Promise<void> {
  for (const id of outcome.deleted) {
    const row = await ctx.db.get("videoDeletions", id);
    if (row === null) continue;
    await ctx.db.delete("videoDeletions", id);
    const job = await ctx.db.get("jobs", row.jobId);
    if (job !== null && job.videoKey === row.key && job.videoDeletedAt === undefined) {
      await ctx.db.patch("jobs", job._id, { videoDeletedAt: now });
    }
  }
  for (const { id, error } of outcome.failed) {
    const row = await ctx.db.get("videoDeletions", id);
    if (row === null) continue;
    const attempts = row.attempts + 1;
    await ctx.db.patch("videoDeletions", id, {
      attempts,
      nextAttemptAt: nextDeletionAttempt(now, attempts),
      lastError: error.slice(0, 500),
    });
  }
}

/**
 * One bounded batch of deletions whose time has come (failed before, or whose action never
 * reported): each is pushed back as if it failed once more (so a slow action is not doubled by
 * the next sweep) and one action is scheduled for the batch. Says whether more may remain.
 */
export async function sweepDeletions(
  ctx: MutationCtx,
  now: number,
): Promise<{ scheduled: number; more: boolean }> {
  const due = await ctx.db
    .query("videoDeletions")
    .withIndex("by_nextAttemptAt", (q) => q.lte("nextAttemptAt", now))
    .take(DELETION_BATCH_SIZE);
  for (const row of due) {
    await ctx.db.patch("videoDeletions", row._id, {
      nextAttemptAt: nextDeletionAttempt(now, row.attempts + 1),
    });
  }
  await scheduleDeletions(
    ctx,
    due.map((row) => row._id),
  );
  return { scheduled: due.length, more: due.length === DELETION_BATCH_SIZE };
}
