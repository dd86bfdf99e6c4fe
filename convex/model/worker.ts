import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import type { R2Config } from "../lib/r2";
import { transitionJob } from "./jobs";
import { imageUrlForWorker } from "./images";
import { uploadFor, videoKeyFor, type VideoUpload } from "./videos";

/**
 * The GPU worker protocol over leases. A worker claims the oldest queued job and holds it for a
 * lease; heartbeats extend the lease, and the job ends with a completion (done, settled) or a
 * failure (requeued while attempts remain, otherwise failed and refunded). A worker holds a job
 * while it is `running`, its `workerId` is the job's and its lease has not passed; any other
 * report is a CONFLICT that changes nothing. Reports are fenced by attempt: a report naming an
 * `attempt` other than the job's (a late report from before a requeue, even by the same worker)
 * is a CONFLICT too. Sweeps requeue or fail jobs whose lease passed and fail jobs left in the
 * queue too long; a claim never hands out either kind (see `claimNextJob`). Every status change
 * goes through `transitionJob`, so a requeue keeps the credits held and the job settles or
 * refunds exactly once. Here: configuration, validation, the lease rules and the claim; reports
 * in workerReports.ts, sweeps in workerSweeps.ts.
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
// Each job failed or requeued here releases its hold across its lots (with the lot, ledger and
// metrics writes that go with it): 30 keep the heaviest batch under 25% of every Convex
// transaction limit (measured in bench/: about 19% of the query limit).
export const SWEEP_BATCH_SIZE = 30;

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

/** The `attempt` a report names (the claim's); absent means "the attempt this worker holds". */
export function validateAttempt(attempt: number | undefined): number | undefined {
  if (attempt !== undefined && !(Number.isSafeInteger(attempt) && attempt >= 1)) {
    throw appError(
      "INVALID_ARGUMENT",
      "attempt must be the whole number (1 or more) that the claim returned.",
    );
  }
  return attempt;
}

export const LEASE_LOST = "the worker stopped reporting before its lease expired";

/**
 * The `error` texts the protocol writes on a job (the owner sees them through `jobs:getJob`).
 * Reports, claims and sweeps share them so the same outcome always reads the same.
 */
export const JOB_ERRORS = {
  /** An attempt failed and the job went back to the queue. */
  retrying: (attempt: number, maxAttempts: number, reason: string) =>
    `Attempt ${attempt} of ${maxAttempts} failed, retrying: ${reason}`,
  /** A retryable failure on the last attempt. */
  gaveUpAfterError: (attempt: number, message: string) =>
    `Gave up after ${attempt} attempts. Last error: ${message}`,
  /** A lease that passed on the last attempt (the lease sweep). */
  gaveUpAfterLeaseLoss: (attempt: number) =>
    `Gave up after ${attempt} attempts: ${LEASE_LOST}. Credits refunded.`,
  /** A requeued job whose attempts ran out because WORKER_MAX_ATTEMPTS was lowered (claims). */
  gaveUpAtLimit: (attempt: number, maxAttempts: number) =>
    `Gave up after ${attempt} attempts: the limit is now ${maxAttempts} attempts. Credits refunded.`,
  /** A job still queued `queueTimeoutMs` after its creation (the queue-timeout sweep). */
  queueTimeout: (queueTimeoutMs: number) =>
    `Queue timeout: no worker finished the job within ${describeDuration(queueTimeoutMs)} of its creation. Credits refunded.`,
};

function describeDuration(ms: number): string {
  return ms % 3_600_000 === 0 ? `${ms / 3_600_000} h` : `${Math.round(ms / 60_000)} min`;
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

export function attemptOf(job: Doc<"jobs">): number {
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

export function lostLease(job: Doc<"jobs">, workerId: string, now: number) {
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

/**
 * The fence: a report naming an attempt (the `attempt` its claim returned) must name the job's
 * current attempt, whoever sends it and whatever the job's status. A report without one is for
 * the attempt its worker holds (workers written before the fence). CONFLICT otherwise.
 */
export function checkAttempt(job: Doc<"jobs">, attempt: number | undefined): void {
  if (attempt === undefined || attempt === attemptOf(job)) {
    return;
  }
  const current = attemptOf(job);
  let where: string;
  if (current === 0) {
    where = `the job is ${job.status} and was never claimed`;
  } else if (job.status === "running") {
    where = `the job is running attempt ${current}`;
  } else {
    where = `the job is ${job.status} after attempt ${current}`;
  }
  throw appError("CONFLICT", `This report is for attempt ${attempt}, but ${where}. Drop it.`);
}

/** CONFLICT unless the report's worker holds `job` at `now`, on the report's attempt if named. */
export function requireHeld(
  job: Doc<"jobs">,
  report: { workerId: string; attempt?: number },
  now: number,
): void {
  checkAttempt(job, report.attempt);
  if (!holdsLease(job, report.workerId, now)) {
    throw lostLease(job, report.workerId, now);
  }
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
  /** With the video bucket: where to PUT the video (valid for the lease). */
  upload?: VideoUpload;
};

/**
 * Out-of-attempts jobs one claim fails (with a refund) before it gives up and answers "nothing
 * to claim". Each one costs a few writes (job, user, ledger, metrics), so 25 stay far below the
 * transaction limits; the next claim carries on from there, so a backlog still drains.
 */
export const CLAIM_MAX_SKIPS = 25;

/**
 * Claims the oldest claimable job (FIFO by `createdAt` through `by_status`) for `workerId`:
 * running, with a lease until `now + leaseMs` and its attempt count raised. Concurrent claims
 * are serialised by the database, so a job is claimed once. A claim never hands out:
 * - a job past its queue timeout (`createdAt <= now - queueTimeoutMs`). Those are the oldest,
 *   so they sit at the head of `by_status`: the index range starts after them, which costs no
 *   reads, and `sweepQueueTimeouts` (every minute, in batches) fails and refunds them. A claim
 *   therefore never stalls behind a timed-out backlog.
 * - a job whose attempts ran out (`attempt >= maxAttempts`, possible only when
 *   WORKER_MAX_ATTEMPTS was lowered after it was requeued). No index finds those and no sweep
 *   looks for them, so the claim fails and refunds each one it meets at the head, then moves on,
 *   at most `CLAIM_MAX_SKIPS` of them per claim; past that it returns null and the next claim
 *   continues.
 * Null when nothing claimable is queued (or the skip bound was reached).
 */
export async function claimNextJob(
  ctx: MutationCtx,
  workerId: string,
  now: number,
  config: WorkerConfig,
  bucket: R2Config | null = null,
): Promise<ClaimedJob | null> {
  validateWorkerId(workerId);
  const oldestClaimable = now - config.queueTimeoutMs;
  for (let skipped = 0; ; skipped++) {
    // Queried again after each skip: the job failed below has left the range (a mutation's
    // queries see its own writes).
    const next = await ctx.db
      .query("jobs")
      .withIndex("by_status", (q) => q.eq("status", "queued").gt("createdAt", oldestClaimable))
      .order("asc")
      .first();
    if (next === null) {
      return null;
    }
    const attempt = attemptOf(next);
    if (attempt < config.maxAttempts) {
      const { job } = await transitionJob(ctx, next, "running", {
        patch: {
          workerId,
          leaseExpiresAt: now + config.leaseMs,
          attempt: attempt + 1,
          startedAt: now,
          progress: 0,
          error: undefined,
          // The attempt's object key, decided here: the only key its worker may upload to.
          videoKey: bucket === null ? undefined : videoKeyFor(next._id, attempt + 1),
        },
      });
      return {
        jobId: job._id,
        prompt: job.prompt,
        imageUrl: await imageUrlForWorker(ctx, job),
        durationSec: job.durationSec,
        seed: job.seed,
        cfg: job.cfg,
        attempt: attemptOf(job),
        maxAttempts: config.maxAttempts,
        leaseExpiresAt: job.leaseExpiresAt!,
        ...(bucket !== null && job.videoKey !== undefined
          ? { upload: await uploadFor(bucket, job.videoKey, now, job.leaseExpiresAt!) }
          : {}),
      };
    }
    if (skipped === CLAIM_MAX_SKIPS) {
      return null;
    }
    await transitionJob(ctx, next, "failed", {
      error: JOB_ERRORS.gaveUpAtLimit(attempt, config.maxAttempts),
    });
  }
}
