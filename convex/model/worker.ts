import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import { transitionJob } from "./jobs";

/**
 * The GPU worker protocol over leases. A worker claims the oldest queued job and holds it for a
 * lease; heartbeats extend the lease, and the job ends with a completion (done, settled) or a
 * failure (requeued while attempts remain, otherwise failed and refunded). A worker holds a job
 * while it is `running`, its `workerId` is the job's and its lease has not passed; any other
 * report is a CONFLICT that changes nothing. Sweeps requeue or fail jobs whose lease passed and
 * fail jobs left in the queue too long. Every status change goes through `transitionJob`, so a
 * requeue keeps the credits held and the job settles or refunds exactly once.
 */

export type WorkerConfig = {
  /** How long a claim or heartbeat holds a job. */
  leaseMs: number;
  /** Claims a job gets before a retryable failure or an expired lease fails it for good. */
  maxAttempts: number;
  /** How long a job may stay queued (counted from its creation) before it fails. */
  queueTimeoutMs: number;
};

export const DEFAULT_WORKER_CONFIG: WorkerConfig = {
  leaseMs: 10 * 60 * 1000,
  maxAttempts: 3,
  queueTimeoutMs: 24 * 60 * 60 * 1000,
};

const DAY_MS = 24 * 60 * 60 * 1000;

/** A whole number from the environment within [min, max]; anything else is the default. */
function intFromEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") {
    return fallback;
  }
  const value = /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    console.warn(
      `${name}=${JSON.stringify(raw)} is not a whole number from ${min} to ${max}; using ${fallback}.`,
    );
    return fallback;
  }
  return value;
}

/** WORKER_LEASE_MS, WORKER_MAX_ATTEMPTS and QUEUE_TIMEOUT_MS, with defaults for unset or bad values. */
export function workerConfig(): WorkerConfig {
  return {
    leaseMs: intFromEnv("WORKER_LEASE_MS", DEFAULT_WORKER_CONFIG.leaseMs, 1000, DAY_MS),
    maxAttempts: intFromEnv("WORKER_MAX_ATTEMPTS", DEFAULT_WORKER_CONFIG.maxAttempts, 1, 100),
    queueTimeoutMs: intFromEnv(
      "QUEUE_TIMEOUT_MS",
      DEFAULT_WORKER_CONFIG.queueTimeoutMs,
      60 * 1000,
      365 * DAY_MS,
    ),
  };
}

export const WORKER_ID_MAX_LENGTH = 128;
/** Jobs per sweep transaction; a sweep schedules itself again while a full batch was found. */
export const SWEEP_BATCH_SIZE = 100;

/** 1 to 128 printable ASCII characters without spaces. */
export function validateWorkerId(workerId: string): string {
  if (workerId.length > WORKER_ID_MAX_LENGTH || !/^[\x21-\x7e]+$/.test(workerId)) {
    throw appError(
      "INVALID_ARGUMENT",
      `workerId must be 1 to ${WORKER_ID_MAX_LENGTH} printable ASCII characters without spaces.`,
    );
  }
  return workerId;
}

/** The job behind an id string from a worker; malformed and unknown ids are NOT_FOUND alike. */
export async function jobByIdString(ctx: MutationCtx, jobId: string): Promise<Doc<"jobs">> {
  const id = ctx.db.normalizeId("jobs", jobId);
  const job = id === null ? null : await ctx.db.get("jobs", id);
  if (job === null) {
    throw appError("NOT_FOUND", "Job not found.");
  }
  return job;
}

function attemptOf(job: Doc<"jobs">): number {
  return job.attempt ?? 0;
}

/** Whether `workerId` holds the job at `now`: running, claimed by it, lease not passed. */
export function holdsLease(job: Doc<"jobs">, workerId: string, now: number): boolean {
  return (
    job.status === "running" &&
    job.workerId === workerId &&
    job.leaseExpiresAt !== undefined &&
    job.leaseExpiresAt > now
  );
}

function lostLease(job: Doc<"jobs">, workerId: string, now: number) {
  let why: string;
  if (job.status !== "running") {
    why = `the job is ${job.status}`;
  } else if (job.workerId !== workerId) {
    why = "another worker holds the job";
  } else {
    why = `the lease expired at ${new Date(job.leaseExpiresAt ?? now).toISOString()}`;
  }
  return appError("CONFLICT", `This worker no longer holds the job: ${why}. Drop it.`);
}

/** The job, if `workerId` holds it at `now`; otherwise NOT_FOUND or CONFLICT. */
async function requireHeldJob(
  ctx: MutationCtx,
  jobId: string,
  workerId: string,
  now: number,
): Promise<Doc<"jobs">> {
  const job = await jobByIdString(ctx, jobId);
  if (!holdsLease(job, workerId, now)) {
    throw lostLease(job, workerId, now);
  }
  return job;
}

export type ClaimedJob = {
  jobId: Id<"jobs">;
  prompt: string;
  imageUrl?: string;
  durationSec: number;
  seed?: number;
  cfg?: number;
  attempt: number;
  maxAttempts: number;
  leaseExpiresAt: number;
};

/**
 * Claims the oldest queued job (FIFO by `createdAt` through `by_status`) for `workerId`:
 * running, with a lease until `now + leaseMs` and its attempt count raised. Null when nothing
 * is queued. Concurrent claims are serialised by the database, so a job is claimed once.
 */
export async function claimNextJob(
  ctx: MutationCtx,
  workerId: string,
  now: number,
  config: WorkerConfig,
): Promise<ClaimedJob | null> {
  validateWorkerId(workerId);
  const next = await ctx.db
    .query("jobs")
    .withIndex("by_status", (q) => q.eq("status", "queued"))
    .order("asc")
    .first();
  if (next === null) {
    return null;
  }
  const { job } = await transitionJob(ctx, next, "running", {
    patch: {
      workerId,
      leaseExpiresAt: now + config.leaseMs,
      attempt: attemptOf(next) + 1,
      startedAt: now,
      progress: 0,
      error: undefined,
    },
  });
  return {
    jobId: job._id,
    prompt: job.prompt,
    imageUrl: job.imageUrl,
    durationSec: job.durationSec,
    seed: job.seed,
    cfg: job.cfg,
    attempt: attemptOf(job),
    maxAttempts: config.maxAttempts,
    leaseExpiresAt: job.leaseExpiresAt!,
  };
}

/** Extends the lease of a held job to `now + leaseMs` and records `progress` (0–100) if given. */
export async function heartbeat(
  ctx: MutationCtx,
  report: { jobId: string; workerId: string; progress?: number },
  now: number,
  config: WorkerConfig,
): Promise<{ jobId: Id<"jobs">; leaseExpiresAt: number; progress: number | undefined }> {
  const { progress } = report;
  if (progress !== undefined && !(Number.isInteger(progress) && progress >= 0 && progress <= 100)) {
    throw appError("INVALID_ARGUMENT", "progress must be a whole number from 0 to 100.");
  }
  const job = await requireHeldJob(ctx, report.jobId, validateWorkerId(report.workerId), now);
  const leaseExpiresAt = now + config.leaseMs;
  await ctx.db.patch("jobs", job._id, {
    leaseExpiresAt,
    ...(progress === undefined ? {} : { progress }),
  });
  return { jobId: job._id, leaseExpiresAt, progress: progress ?? job.progress };
}

/**
 * Marks a held job done with its video (settling its credits) through `transitionJob`, like
 * `jobs:updateJobStatus`. The finishing worker's id stays on the job, so the same worker
 * repeating the same completion is answered `changed: false` and nothing happens twice.
 */
export async function completeJob(
  ctx: MutationCtx,
  report: { jobId: string; workerId: string; r2Url: string },
  now: number,
): Promise<{ jobId: Id<"jobs">; changed: boolean; expiresAt: number | undefined }> {
  validateWorkerId(report.workerId);
  const job = await jobByIdString(ctx, report.jobId);
  if (job.status === "done" && job.workerId === report.workerId && job.r2Url === report.r2Url) {
    return { jobId: job._id, changed: false, expiresAt: job.expiresAt };
  }
  if (!holdsLease(job, report.workerId, now)) {
    throw lostLease(job, report.workerId, now);
  }
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
 * id stays on a failed job, so repeating the report changes nothing.
 */
export async function failJob(
  ctx: MutationCtx,
  report: { jobId: string; workerId: string; error: string; retryable?: boolean },
  now: number,
  config: WorkerConfig,
): Promise<FailOutcome> {
  validateWorkerId(report.workerId);
  const message = report.error.trim();
  if (message.length === 0) {
    throw appError("INVALID_ARGUMENT", "error must describe the failure.");
  }
  const job = await jobByIdString(ctx, report.jobId);
  if (job.status === "failed" && job.workerId === report.workerId) {
    return {
      jobId: job._id,
      changed: false,
      status: "failed",
      attempt: attemptOf(job),
      retrying: false,
    };
  }
  if (!holdsLease(job, report.workerId, now)) {
    throw lostLease(job, report.workerId, now);
  }
  const attempt = attemptOf(job);
  if (report.retryable === true && attempt < config.maxAttempts) {
    await transitionJob(ctx, job, "queued", {
      error: `Attempt ${attempt} of ${config.maxAttempts} failed, retrying: ${message}`,
    });
    return { jobId: job._id, changed: true, status: "queued", attempt, retrying: true };
  }
  await transitionJob(ctx, job, "failed", {
    error:
      report.retryable === true
        ? `Gave up after ${attempt} attempts. Last error: ${message}`
        : message,
    patch: { workerId: report.workerId },
  });
  return { jobId: job._id, changed: true, status: "failed", attempt, retrying: false };
}

export type SweepResult = { requeued: number; failed: number; more: boolean };

/**
 * One batch of running jobs whose lease passed (a worker crashed or stopped reporting): each is
 * requeued while attempts remain, otherwise failed with a refund. Running jobs without a lease
 * (moved by operators through `jobs:updateJobStatus`) are left alone.
 */
export async function sweepExpiredLeases(
  ctx: MutationCtx,
  now: number,
  config: WorkerConfig,
): Promise<SweepResult> {
  const expired = await ctx.db
    .query("jobs")
    .withIndex("by_status_and_leaseExpiresAt", (q) =>
      q.eq("status", "running").gte("leaseExpiresAt", 0).lte("leaseExpiresAt", now),
    )
    .take(SWEEP_BATCH_SIZE);
  let requeued = 0;
  let failed = 0;
  for (const job of expired) {
    const attempt = attemptOf(job);
    if (attempt < config.maxAttempts) {
      await transitionJob(ctx, job, "queued", {
        error: `Attempt ${attempt} of ${config.maxAttempts} failed, retrying: the worker stopped reporting before its lease expired.`,
      });
      requeued++;
    } else {
      await transitionJob(ctx, job, "failed", {
        error: `Gave up after ${attempt} attempts: the worker stopped reporting before its lease expired. Credits refunded.`,
      });
      failed++;
    }
  }
  return { requeued, failed, more: expired.length === SWEEP_BATCH_SIZE };
}

function describeDuration(ms: number): string {
  return ms % 3_600_000 === 0 ? `${ms / 3_600_000} h` : `${Math.round(ms / 60_000)} min`;
}

/** One batch of jobs still queued `queueTimeoutMs` after creation: failed with a refund. */
export async function sweepQueueTimeouts(
  ctx: MutationCtx,
  now: number,
  config: WorkerConfig,
): Promise<{ failed: number; more: boolean }> {
  const stale = await ctx.db
    .query("jobs")
    .withIndex("by_status", (q) =>
      q.eq("status", "queued").lte("createdAt", now - config.queueTimeoutMs),
    )
    .take(SWEEP_BATCH_SIZE);
  const limit = describeDuration(config.queueTimeoutMs);
  for (const job of stale) {
    await transitionJob(ctx, job, "failed", {
      error: `Queue timeout: no worker finished the job within ${limit} of its creation. Credits refunded.`,
    });
  }
  return { failed: stale.length, more: stale.length === SWEEP_BATCH_SIZE };
}
