import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { appError } from "../lib/errors";

/**
 * Input images in Convex file storage: using them in jobs, releasing them, and the sweep of
 * uploads nobody uses (uploading them: model/imageUploads.ts).
 *
 * A job's image is used by `createJob`: only its uploader can use it, and for anyone else it
 * does not exist (NOT_FOUND). When a job reaches a final status its image is deleted, unless
 * another unfinished job still uses it. Uploads no unfinished job uses are deleted once older
 * than `ORPHAN_IMAGE_RETENTION_MS` (24 h) by an hourly sweep (`deleteOrphanImages`), so an upload
 * never passed to `createJob` does not stay.
 */

export const IMAGE_CONTENT_TYPES = ["image/png", "image/jpeg", "image/webp"] as const;
export const IMAGE_MAX_BYTES = 10 * 1024 * 1024;

const NO_SUCH_IMAGE = "imageStorageId names no image of yours.";

/**
 * The image `storageId` for a new job of `user`: it must exist, be the user's and be a PNG, JPEG
 * or WebP of at most 10 MiB, as the upload route checked it (model/imageUploads.ts); a file with
 * no upload record (uploaded before the route existed) is checked through its `_storage`
 * metadata and becomes the user's. Another user's image is NOT_FOUND, like a deleted one. The
 * upload no longer counts as unused.
 */
export async function useImage(
  ctx: MutationCtx,
  user: Doc<"users">,
  storageId: Id<"_storage">,
  now: number,
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
  const declared = upload?.contentType ?? file.contentType;
  const type = (declared ?? "").split(";")[0].trim().toLowerCase();
  if (!(IMAGE_CONTENT_TYPES as readonly string[]).includes(type)) {
    throw appError(
      "INVALID_ARGUMENT",
      `imageStorageId must be a PNG, JPEG or WebP image (the file is ${declared ?? "of no declared type"}).`,
    );
  }
  if (!(file.size > 0 && file.size <= IMAGE_MAX_BYTES)) {
    throw appError(
      "INVALID_ARGUMENT",
      `imageStorageId must be an image of 1 byte to 10 MiB (the file has ${file.size} bytes).`,
    );
  }
  if (upload === null) {
    await ctx.db.insert("imageUploads", {
      storageId,
      userId: user._id,
      createdAt: now,
      usedAt: now,
    });
  } else if (upload.usedAt === undefined) {
    await ctx.db.patch("imageUploads", upload._id, { usedAt: now });
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
 * (the upload route of model/imageUploads.ts is the only way in: a feature that stores other
 * files must teach this sweep to leave them alone), and files stored before that route existed
 * have an `imageUploads` record only once a job used them, so the sweep walks `_storage` itself,
 * oldest first, through its
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
