import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import type { ObjectHead, R2Config } from "../lib/r2";
import { transitionJob } from "./jobs";
import {
  checkUploadedVideo,
  finalVideoKeyFor,
  uploadFor,
  videoKeyFor,
  type VideoUpload,
} from "./videos";

import {
  JOB_ERRORS,
  attemptOf,
  checkAttempt,
  jobByIdString,
  requireHeld,
  validateAttempt,
  validateWorkerId,
  type WorkerConfig,
} from "./worker";

/** A worker's reports on a job it holds (model/worker.ts): heartbeats, completion, failure. */

export type WorkerReport = {
  jobId: string;
  workerId: string;
  /** The attempt the claim returned; a report for any other attempt is a CONFLICT. */
  attempt?: number;
};

/** Extends the lease of a held job to `now + leaseMs` and records `progress` (0–100) if given. */
export async function heartbeat(
  ctx: MutationCtx,
  report: WorkerReport & { progress?: number },
  now: number,
  config: WorkerConfig,
  bucket: R2Config | null = null,
): Promise<{
  jobId: Id<"jobs">;
  leaseExpiresAt: number;
  progress: number | undefined;
  upload?: VideoUpload;
}> {
  const { progress } = report;
  if (progress !== undefined && !(Number.isInteger(progress) && progress >= 0 && progress <= 100)) {
    throw appError("INVALID_ARGUMENT", "progress must be a whole number from 0 to 100.");
  }
  validateWorkerId(report.workerId);
  validateAttempt(report.attempt);
  const job = await jobByIdString(ctx, report.jobId);
  requireHeld(job, report, now);
  const leaseExpiresAt = now + config.leaseMs;
  await ctx.db.patch("jobs", job._id, {
    leaseExpiresAt,
    ...(progress === undefined ? {} : { progress }),
  });
  // A fresh upload URL for the longer lease (the claim's ends with the claim's lease).
  const upload =
    bucket !== null && job.videoKey !== undefined
      ? { upload: await uploadFor(bucket, job.videoKey, now, leaseExpiresAt) }
      : {};
  return { jobId: job._id, leaseExpiresAt, progress: progress ?? job.progress, ...upload };
}

/**
 * Marks a held job done with its video (settling its credits) through `transitionJob`, like
 * `jobs:updateJobStatus`. The finishing worker's id stays on the job (and so does its attempt),
 * so the same worker repeating the same completion for the same attempt is answered
 * `changed: false` and nothing happens twice.
 */
export type Completion = WorkerReport & {
  /** Development mode: the video's https URL. */
  r2Url?: string;
  /** Bucket mode: the key the worker uploaded to (optional: it can only be the attempt's). */
  key?: string;
  /**
   * Bucket mode: what the HTTP action found just before this mutation: the HEAD of the final
   * key the upload was copied to, or the upload's HEAD when it was no acceptable video.
   */
  object?: ObjectHead;
};

/**
 * Completes a held job. Development mode (`bucket` null): with the worker's https `r2Url`.
 * Bucket mode: with the video the worker uploaded to the attempt's key, as the HTTP action's
 * copy to the final key found it (`object`: present, non-empty, not too large, video/mp4; else
 * CONFLICT, nothing changes); a URL is refused. Repeating the finished completion changes nothing; a completion
 * naming another key (or another URL) is a CONFLICT.
 */
export async function completeJob(
  ctx: MutationCtx,
  report: Completion,
  now: number,
  bucket: R2Config | null = null,
): Promise<{ jobId: Id<"jobs">; changed: boolean; expiresAt: number | undefined }> {
  validateWorkerId(report.workerId);
  validateAttempt(report.attempt);
  if (bucket === null) {
    if (report.r2Url === undefined) {
      throw appError("INVALID_ARGUMENT", "r2Url is required.");
    }
    if (report.key !== undefined || report.object !== undefined) {
      throw appError(
        "INVALID_ARGUMENT",
        "key is only used when videos are stored in the bucket (R2 is not configured here).",
      );
    }
    return await completeWithUrl(ctx, { ...report, r2Url: report.r2Url }, now);
  }
  if (report.r2Url !== undefined) {
    throw appError(
      "INVALID_ARGUMENT",
      "r2Url is not accepted: upload the video to the claim's upload URL and complete without it.",
    );
  }
  const job = await jobByIdString(ctx, report.jobId);
  checkAttempt(job, report.attempt);
  // The attempt's upload key is what the worker knows (and may name); once done, the job's
  // `videoKey` is the final key.
  const uploadKey = videoKeyFor(job._id, attemptOf(job));
  const key = report.key ?? uploadKey;
  if (job.status === "done" && job.workerId === report.workerId && job.videoBytes !== undefined) {
    if (key !== uploadKey) {
      throw appError(
        "CONFLICT",
        `The job is already done with the video uploaded to ${uploadKey}, not ${key}.`,
      );
    }
    return { jobId: job._id, changed: false, expiresAt: job.expiresAt };
  }
  requireHeld(job, report, now);
  if (job.videoKey === undefined) {
    throw appError(
      "CONFLICT",
      "This attempt has no upload key (it was claimed before the bucket was configured): fail it as retryable.",
    );
  }
  if (key !== job.videoKey) {
    throw appError(
      "CONFLICT",
      `key ${JSON.stringify(key).slice(0, 200)} is not this attempt's object: upload to ${job.videoKey}.`,
    );
  }
  const finalKey = finalVideoKeyFor(job._id, attemptOf(job));
  const { object } = report;
  if (object === undefined || (object.key !== job.videoKey && object.key !== finalKey)) {
    throw appError("CONFLICT", `The object at ${job.videoKey} was not checked: complete again.`);
  }
  const { size } = checkUploadedVideo(object);
  if (object.key !== finalKey) {
    throw appError(
      "CONFLICT",
      `The video at ${job.videoKey} was not copied to its final key: complete again.`,
    );
  }
  // Done with the final copy, as its HEAD found it: what the owner downloads.
  const result = await transitionJob(ctx, job, "done", {
    video: { size, key: finalKey },
    patch: { workerId: report.workerId },
  });
  return { jobId: job._id, changed: true, expiresAt: result.job.expiresAt };
}

async function completeWithUrl(
  ctx: MutationCtx,
  report: WorkerReport & { r2Url: string },
  now: number,
): Promise<{ jobId: Id<"jobs">; changed: boolean; expiresAt: number | undefined }> {
  const job = await jobByIdString(ctx, report.jobId);
  checkAttempt(job, report.attempt);
  if (job.status === "done" && job.workerId === report.workerId && job.r2Url === report.r2Url) {
    return { jobId: job._id, changed: false, expiresAt: job.expiresAt };
  }
  requireHeld(job, report, now);
  const result = await transitionJob(ctx, job, "done", {
    r2Url: report.r2Url,
    patch: { workerId: report.workerId },
  });
  return { jobId: job._id, changed: true, expiresAt: result.job.expiresAt };
}

export type FailOutcome = {
  jobId: Id<"jobs">;
  changed: boolean;
  status: "queued" | "failed";
  attempt: number;
  retrying: boolean;
};

/**
 * Reports a held job's failure. Retryable and attempts left: back to `queued` (credits stay
 * held, the error is shown to the owner). Otherwise `failed` with a refund. The failing worker's
 * id (and its attempt) stays on a failed job, so repeating the report changes nothing.
 */
export async function failJob(
  ctx: MutationCtx,
  report: WorkerReport & { error: string; retryable?: boolean },
  now: number,
  config: WorkerConfig,
): Promise<FailOutcome> {
  validateWorkerId(report.workerId);
  validateAttempt(report.attempt);
  const message = report.error.trim();
  if (message.length === 0) {
    throw appError("INVALID_ARGUMENT", "error must describe the failure.");
  }
  const job = await jobByIdString(ctx, report.jobId);
  checkAttempt(job, report.attempt);
  if (job.status === "failed" && job.workerId === report.workerId) {
    return {
      jobId: job._id,
      changed: false,
      status: "failed",
      attempt: attemptOf(job),
      retrying: false,
    };
  }
  requireHeld(job, report, now);
  const attempt = attemptOf(job);
  // The failing worker's id stays on a failed job, so a repeated report is recognised.
  const patch = { workerId: report.workerId };
  let status: "queued" | "failed" = "failed";
  if (report.retryable === true) {
    status = await retryOrFail(ctx, job, config, {
      reason: message,
      finalError: JOB_ERRORS.gaveUpAfterError(attempt, message),
      patch,
    });
  } else {
    await transitionJob(ctx, job, "failed", { error: message, patch });
  }
  return { jobId: job._id, changed: true, status, attempt, retrying: status === "queued" };
}

/**
 * The one retry rule: a failed attempt goes back to the queue (its credits still held) while
 * attempts remain, otherwise the job fails for good and its hold is released.
 */
export async function retryOrFail(
  ctx: MutationCtx,
  job: Doc<"jobs">,
  config: WorkerConfig,
  failure: { reason: string; finalError: string; patch?: Partial<Doc<"jobs">> },
): Promise<"queued" | "failed"> {
  const attempt = attemptOf(job);
  if (attempt < config.maxAttempts) {
    await transitionJob(ctx, job, "queued", {
      error: JOB_ERRORS.retrying(attempt, config.maxAttempts, failure.reason),
    });
    return "queued";
  }
  await transitionJob(ctx, job, "failed", { error: failure.finalError, patch: failure.patch });
  return "failed";
}
