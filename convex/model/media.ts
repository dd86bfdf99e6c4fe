import type { Doc, Id } from "../_generated/dataModel";
import { internal } from "../_generated/api";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import { r2DeletionPool } from "../lib/workpools";
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
 * a final status its image is deleted, unless another unfinished job still uses it. Uploads no
 * unfinished job uses are deleted once older than `ORPHAN_IMAGE_RETENTION_MS` (24 h) by an
 * hourly sweep (`deleteOrphanImages`), so an upload never passed to `createJob` does not stay.
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
  if (await inUseByUnfinishedJob(ctx, storageId, job._id)) {
    return;
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

/**
 * How long an upload may wait to be used: a Convex storage file older than this that no
 * unfinished (queued or running) job uses is deleted by `deleteOrphanImages`. An upload that was
 * never passed to `createJob` (or whose jobs are all final) therefore goes within this window
 * plus an hour (the cron's period). The upload URL itself is valid for an hour.
 */
export const ORPHAN_IMAGE_RETENTION_MS = 24 * 60 * 60 * 1000;
/** Files examined per `deleteOrphanImages` transaction (each reads about three more rows). */
export const ORPHAN_IMAGE_BATCH_SIZE = 100;

/**
 * One bounded batch of the orphan sweep. Every file in Convex storage is an input-image upload
 * (`jobs:generateImageUploadUrl` is the only way in: a feature that stores other files must
 * teach this sweep to leave them alone), and an upload gets an `imageUploads` record only when a
 * job first uses it, so the sweep walks `_storage` itself, oldest first, through its
 * `by_creation_time` index: files created before `createdBefore` (at most `now` minus the
 * retention window, so a stale or forged continuation cannot reach younger files) and after
 * `after` (the cursor: the creation time of the last file the previous batch examined; a file
 * with exactly that creation time would wait for the next run, which starts from the oldest).
 *
 * A file that a queued or running job uses is kept (it goes with `releaseImage` when its last
 * job is final); any other is deleted with its `imageUploads` record, if any. Every file read
 * here exists in this transaction, so `storage.delete` never meets a missing id, and a
 * concurrent `createJob` of the same file conflicts with the deletion (one of them retries: the
 * job then finds no file, NOT_FOUND). Running a batch twice, or two sweeps at once, deletes
 * nothing more: the second finds the orphans gone and the kept files still in use.
 */
export async function deleteOrphanImages(
  ctx: MutationCtx,
  now: number,
  range: { createdBefore?: number; after?: number },
): Promise<{
  deleted: number;
  kept: number;
  createdBefore: number;
  after: number | null;
  more: boolean;
}> {
  const createdBefore = Math.min(range.createdBefore ?? Infinity, now - ORPHAN_IMAGE_RETENTION_MS);
  const after = range.after;
  const files = await ctx.db.system
    .query("_storage")
    .withIndex("by_creation_time", (q) =>
      after === undefined
        ? q.lt("_creationTime", createdBefore)
        : q.gt("_creationTime", after).lt("_creationTime", createdBefore),
    )
    .take(ORPHAN_IMAGE_BATCH_SIZE);
  let deleted = 0;
  for (const file of files) {
    if (await inUseByUnfinishedJob(ctx, file._id)) {
      continue;
    }
    await ctx.storage.delete(file._id);
    const upload = await ctx.db
      .query("imageUploads")
      .withIndex("by_storageId", (q) => q.eq("storageId", file._id))
      .unique();
    if (upload !== null) {
      await ctx.db.delete("imageUploads", upload._id);
    }
    deleted++;
  }
  return {
    deleted,
    kept: files.length - deleted,
    createdBefore,
    after: files.length > 0 ? files[files.length - 1]._creationTime : (after ?? null),
    more: files.length === ORPHAN_IMAGE_BATCH_SIZE,
  };
}

/** Whether a queued or running job (other than `except`) uses the file as its input image. */
async function inUseByUnfinishedJob(
  ctx: QueryCtx,
  storageId: Id<"_storage">,
  except?: Id<"jobs">,
): Promise<boolean> {
  for (const status of UNFINISHED) {
    const user = await ctx.db
      .query("jobs")
      .withIndex("by_imageStorageId_and_status", (q) =>
        q.eq("imageStorageId", storageId).eq("status", status),
      )
      .take(2);
    if (user.some((job) => job._id !== except)) {
      return true;
    }
  }
  return false;
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
    // The caller schedules the first run now (`scheduleDeletions`): attempt 1.
    attempts: 1,
    nextAttemptAt: nextDeletionAttempt(now, 1),
    createdAt: now,
  });
}

/**
 * One run of `media.deleteVideoObjects` for these deletions (at most `DELETION_BATCH_SIZE`),
 * through the R2 deletion workpool: bounded parallelism, a crashed run retried with backoff, and
 * `media.deletionsFinished` told if it never succeeded.
 */
export async function scheduleDeletions(
  ctx: MutationCtx,
  deletionIds: Array<Id<"videoDeletions">>,
): Promise<void> {
  if (deletionIds.length > 0) {
    await r2DeletionPool.enqueueAction(
      ctx,
      internal.media.deleteVideoObjects,
      { deletionIds },
      {
        onComplete: internal.media.deletionsFinished,
        onCompleteExcludeKinds: ["success"],
        context: { deletionIds },
      },
    );
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
    // The attempt was counted when it was scheduled; the next waits its backoff from now.
    await ctx.db.patch("videoDeletions", id, {
      nextAttemptAt: nextDeletionAttempt(now, row.attempts),
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
    // Counted as a failed attempt now: an action that never reports still backs off (10 min,
    // 20, 40, ... 6 h) instead of being retried every sweep for ever.
    const attempts = row.attempts + 1;
    await ctx.db.patch("videoDeletions", row._id, {
      attempts,
      nextAttemptAt: nextDeletionAttempt(now, attempts),
    });
  }
  await scheduleDeletions(
    ctx,
    due.map((row) => row._id),
  );
  return { scheduled: due.length, more: due.length === DELETION_BATCH_SIZE };
}
