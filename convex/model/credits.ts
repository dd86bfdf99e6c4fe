import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { appError, isAppError } from "../lib/errors";
import {
  consumeAllocations,
  holdFromLots,
  releaseAllocations,
  removeAvailable,
  type Allocation,
} from "./lotHolds";
import { grantLot } from "./lots";
import { unconvertedRows } from "./lotsMigration";

/**
 * Two-phase credit transfers, per job, on credit lots (model/lots.ts): `reserveJobCredits`
 * holds the job's price in the user's lots (soonest-expiring first; the job records its
 * allocations), then exactly one of `settleJobCredits` (the allocations are consumed) or
 * `releaseJobCredits` (they go back: see `releaseAllocations`). `jobs.creditStatus` records
 * which, so repeated or late reports change nothing. A hold exists only with its job.
 */

export function assertPositiveCredits(credits: number): void {
  if (!Number.isSafeInteger(credits) || credits <= 0) {
    throw appError("INVALID_ARGUMENT", "credits must be a positive whole number.");
  }
}

export type ReserveResult =
  { ok: true; balance: number } | { ok: false; reason: "INSUFFICIENT_CREDITS"; balance: number };

/**
 * Holds the job's price (`creditsUsed`) in the user's lots and records the allocations on the
 * job. INSUFFICIENT_CREDITS (nothing written) if the lots do not cover it. Called once per job,
 * by `createJob`, in the transaction that inserts the job.
 */
export async function reserveJobCredits(ctx: MutationCtx, job: Doc<"jobs">): Promise<number> {
  assertPositiveCredits(job.creditsUsed);
  const user = await ctx.db.get("users", job.userId);
  if (user === null) {
    throw appError("NOT_FOUND", "User not found.");
  }
  const allocations = await holdFromLots(ctx, user, job.creditsUsed, {
    kind: "reserve",
    jobId: job._id,
  });
  await ctx.db.patch("jobs", job._id, { allocations });
  return (await ctx.db.get("users", job.userId))!.credits;
}

/** `reserveJobCredits` that answers a balance too small with `ok: false` instead of throwing. */
export async function tryReserveJobCredits(
  ctx: MutationCtx,
  job: Doc<"jobs">,
): Promise<ReserveResult> {
  try {
    return { ok: true, balance: await reserveJobCredits(ctx, job) };
  } catch (error) {
    if (isAppError(error) && error.data.code === "INSUFFICIENT_CREDITS") {
      const user = await ctx.db.get("users", job.userId);
      return { ok: false, reason: "INSUFFICIENT_CREDITS", balance: user?.credits ?? 0 };
    }
    throw error;
  }
}

/**
 * Makes the job's hold final (the metrics count it as consumed). Returns false (and writes
 * nothing) unless the hold is open.
 */
export async function settleJobCredits(ctx: MutationCtx, job: Doc<"jobs">): Promise<boolean> {
  if (job.creditStatus !== "held") {
    return false;
  }
  await ctx.db.patch("jobs", job._id, { creditStatus: "settled" });
  await settleHold(ctx, job);
  return true;
}

/** The job's allocations; a hold from before lots (none) must be converted first. */
function allocationsOf(job: Doc<"jobs">): Allocation[] {
  if (job.allocations === undefined) {
    throw unconvertedRows(`The hold of job ${job._id} (no allocations)`);
  }
  return job.allocations;
}

/** The credit half of a settle; the caller marks the job `settled` in the same transaction. */
export async function settleHold(ctx: MutationCtx, job: Doc<"jobs">): Promise<void> {
  await consumeAllocations(ctx, allocationsOf(job), { kind: "settle", jobId: job._id });
}

/**
 * Gives the job's hold back (failed, canceled, timed out): each allocation returns to its lot,
 * is voided if its payment was refunded, or comes back as a `returned` lot if its lot expired
 * meanwhile (see `releaseAllocations`). Returns false (and writes nothing) unless the hold is
 * open.
 */
export async function releaseJobCredits(ctx: MutationCtx, job: Doc<"jobs">): Promise<boolean> {
  if (job.creditStatus !== "held") {
    return false;
  }
  await ctx.db.patch("jobs", job._id, { creditStatus: "refunded" });
  await releaseHold(ctx, job);
  return true;
}

/** The credit half of a release; the caller marks the job `refunded` in the same transaction. */
export async function releaseHold(ctx: MutationCtx, job: Doc<"jobs">): Promise<void> {
  await releaseAllocations(ctx, job.userId, allocationsOf(job), {
    kind: "release",
    jobId: job._id,
  });
}

/** A job reserves exactly once (`createJob` does it): reserving again for it is a CONFLICT. */
export async function requireJobWithoutHold(
  ctx: MutationCtx,
  userId: Id<"users">,
  jobId: Id<"jobs">,
  credits: number,
): Promise<Doc<"jobs">> {
  assertPositiveCredits(credits);
  const job = await ctx.db.get("jobs", jobId);
  if (job === null) {
    throw appError("NOT_FOUND", "Job not found.");
  }
  if (job.userId !== userId) {
    throw appError("INVALID_ARGUMENT", "jobId belongs to another user.");
  }
  if (job.creditsUsed !== credits) {
    throw appError("INVALID_ARGUMENT", `This job's price is ${job.creditsUsed} credits.`);
  }
  const existing = await ctx.db
    .query("ledger")
    .withIndex("by_jobId", (q) => q.eq("jobId", jobId))
    .first();
  if (existing !== null) {
    throw appError("CONFLICT", "This job already holds its reservation.");
  }
  return job;
}

export const ADJUSTMENT_NOTE_MAX_LENGTH = 500;

/**
 * An operator's correction, with a note saying why: positive credits are a lot of their own
 * (expiring at `expiresAt`, or never); negative ones remove available credits in spending order,
 * never below zero.
 */
export async function grantAdjustment(
  ctx: MutationCtx,
  userId: Id<"users">,
  credits: number,
  note: string,
  expiresAt?: number,
): Promise<number> {
  if (!Number.isSafeInteger(credits) || credits === 0) {
    throw appError("INVALID_ARGUMENT", "credits must be a non-zero whole number.");
  }
  const trimmed = note.trim();
  if (trimmed.length === 0 || trimmed.length > ADJUSTMENT_NOTE_MAX_LENGTH) {
    throw appError(
      "INVALID_ARGUMENT",
      `note must be 1 to ${ADJUSTMENT_NOTE_MAX_LENGTH} characters saying why.`,
    );
  }
  const user = await ctx.db.get("users", userId);
  if (user === null) {
    throw appError("NOT_FOUND", "User not found.");
  }
  const entry = { kind: "adjustment" as const, note: trimmed };
  if (credits > 0) {
    await grantLot(ctx, userId, { ...entry, source: "adjustment", credits, expiresAt });
  } else {
    if (expiresAt !== undefined) {
      throw appError("INVALID_ARGUMENT", "expiresAt applies to positive credits only.");
    }
    await removeAvailable(ctx, user, -credits, entry);
  }
  return (await ctx.db.get("users", userId))!.credits;
}
