import type { MutationCtx } from "../_generated/server";
import { transitionJob } from "./jobs";
import { JOB_ERRORS, LEASE_LOST, SWEEP_BATCH_SIZE, attemptOf, type WorkerConfig } from "./worker";
import { retryOrFail } from "./workerReports";

/** The worker sweeps (crons): leases that passed, jobs queued too long. */

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
    const outcome = await retryOrFail(ctx, job, config, {
      reason: `${LEASE_LOST}.`,
      finalError: JOB_ERRORS.gaveUpAfterLeaseLoss(attemptOf(job)),
    });
    if (outcome === "queued") requeued++;
    else failed++;
  }
  return { requeued, failed, more: expired.length === SWEEP_BATCH_SIZE };
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
  for (const job of stale) {
    await transitionJob(ctx, job, "failed", {
      error: JOB_ERRORS.queueTimeout(config.queueTimeoutMs),
    });
  }
  return { failed: stale.length, more: stale.length === SWEEP_BATCH_SIZE };
}
