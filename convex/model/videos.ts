import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import type { JobStatus } from "../lib/validators";
import {
  VIDEO_CONTENT_TYPE,
  VIDEO_MAX_BYTES,
  copyObject,
  finalVideoKeyFor,
  headObject,
  presign,
  r2Setting,
  videoKeyFor,
  type ObjectHead,
  type R2Config,
} from "../lib/r2";
import { requestDeletion, type DeletionReason } from "./videoDeletions";

/**
 * Videos in the private bucket (R2 configured), stage by stage.
 *
 * Upload: a claim decides the attempt's upload key (`videoKeyFor`) and hands the worker a
 * presigned PUT for it, valid until the lease ends; each heartbeat hands a fresh one.
 *
 * Completion: the HTTP action HEADs the upload; if it is a video the job can be done with, it
 * copies it (CopyObject, `x-amz-copy-source-if-match` the HEAD's ETag) to the attempt's final key
 * (`finalVideoKeyFor`), for which no upload URL is ever signed, and HEADs the copy. The mutation
 * checks that HEAD (present, non-empty, within `VIDEO_MAX_BYTES`, `video/mp4`) and records its
 * size: the job is done with exactly the object the owner will download. The upload URLs stay
 * valid until the lease ends, but they can only write the upload key, which is not served and is
 * deleted (see model/videoDeletions.ts).
 *
 * Serving: the owner reads the final key through a presigned GET dated at the job's finish and
 * valid exactly until `expiresAt` (`videoUrl`).
 */

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

export { finalVideoKeyFor, videoKeyFor };

// ---------------------------------------------------------------------------------------------
// Upload

export type VideoUpload = {
  method: "PUT";
  url: string;
  key: string;
  headers: { "Content-Type": string };
  expiresAt: number;
};

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

// ---------------------------------------------------------------------------------------------
// Completion

/** Why the object is not a video a job can be done with, or null if it is one. */
function videoProblem(object: ObjectHead): string | null {
  const where = `at key ${object.key}`;
  if (!object.exists) {
    return `No video was uploaded ${where}: PUT it to the claim's upload URL (Content-Type: ${VIDEO_CONTENT_TYPE}), then complete.`;
  }
  if (!(object.size > 0)) {
    return `The video ${where} is empty: upload it again, then complete.`;
  }
  if (object.size > VIDEO_MAX_BYTES) {
    return `The video ${where} has ${object.size} bytes, more than the ${VIDEO_MAX_BYTES} allowed.`;
  }
  const type = (object.contentType ?? "").split(";")[0].trim().toLowerCase();
  if (type !== VIDEO_CONTENT_TYPE) {
    return `The object ${where} is ${object.contentType ?? "of no content type"}, not ${VIDEO_CONTENT_TYPE}: upload it again with Content-Type: ${VIDEO_CONTENT_TYPE}.`;
  }
  return null;
}

/**
 * What a HEAD found, as a refusal (CONFLICT, nothing changes) unless it is a video the job can
 * be done with.
 */
export function checkUploadedVideo(object: ObjectHead): { size: number } {
  const problem = videoProblem(object);
  if (problem !== null || !object.exists) {
    throw appError("CONFLICT", problem ?? "No video.");
  }
  return { size: object.size };
}

/**
 * The completion's bucket work, in the HTTP action before its mutation: HEAD the attempt's
 * upload; if it is an acceptable video, copy exactly that object (if-match its ETag) to the final
 * key and return the final key's HEAD, which the mutation checks and records. An unacceptable
 * upload is returned as found, for the mutation to refuse (after its lease check). Throws
 * R2Error when the bucket fails or does not answer in time.
 */
export async function copyUploadToFinalKey(
  config: R2Config,
  keys: { uploadKey: string; finalKey: string },
): Promise<ObjectHead> {
  const upload = await headObject(config, keys.uploadKey);
  if (videoProblem(upload) !== null || !upload.exists) {
    return upload;
  }
  const copied = await copyObject(config, keys.uploadKey, keys.finalKey, upload.etag);
  if (copied === "missing") {
    return { key: keys.uploadKey, exists: false };
  }
  if (copied === "changed") {
    throw appError(
      "CONFLICT",
      `The video at key ${keys.uploadKey} changed while it was being checked: complete again.`,
    );
  }
  return await headObject(config, keys.finalKey);
}

// ---------------------------------------------------------------------------------------------
// Serving

/**
 * The owner's URL for a done job's video. Bucket videos get a presigned GET of the job's final
 * key dated at its `finishedAt` and valid until its `expiresAt` (never longer): the same job
 * always gives the same URL, so `getJob` stays a cached, reactive query that reads no clock, and
 * the link stops working when the video expires. Videos reported as URLs (development mode,
 * operators) are returned as stored.
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
  const signed = await presign(setting.config, "GET", job.videoKey, job.finishedAt, job.expiresAt);
  return signed.url;
}

// ---------------------------------------------------------------------------------------------
// What a change of status leaves behind

const ATTEMPT_END_REASON: Partial<Record<JobStatus, DeletionReason>> = {
  done: "completed",
  queued: "retried",
  failed: "failed",
};

/**
 * Records the deletions of the bucket objects `job` (as it was before changing to `to`) leaves
 * behind, and returns their ids for the caller to schedule:
 * - an attempt that ends (running to done, queued or failed): its upload key, which its upload
 *   URLs can still write until the lease they were signed for ends, so the deletion is repeated
 *   after that; unless done, also its final key (a completion may have copied the upload before
 *   its mutation was refused), with the same window since that completion may still be running.
 * - a done video that expires: its final key.
 */
export async function requestVideoDeletions(
  ctx: MutationCtx,
  job: Doc<"jobs">,
  to: JobStatus,
  now: number,
): Promise<Array<Id<"videoDeletions">>> {
  if (job.videoKey === undefined) {
    return [];
  }
  if (to === "expired") {
    return [await requestDeletion(ctx, job, job.videoKey, "expired", now)];
  }
  const reason = ATTEMPT_END_REASON[to];
  if (job.status !== "running" || reason === undefined) {
    return [];
  }
  // Every upload URL of the attempt was signed to expire with the lease at the time.
  const urlsExpireAt = Math.max(job.leaseExpiresAt ?? now, now);
  const ids = [await requestDeletion(ctx, job, job.videoKey, reason, now, urlsExpireAt)];
  if (to !== "done") {
    const finalKey = finalVideoKeyFor(job._id, job.attempt ?? 0);
    ids.push(await requestDeletion(ctx, job, finalKey, reason, now, urlsExpireAt));
  }
  return ids;
}
