import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { appError, isAppError } from "../lib/errors";
import { applyCreditChange } from "./ledger";
import { payDownOwedCredits } from "./refunds";

/**
 * Two-phase credit transfers, per job: `reserveJobCredits` moves the job's price from the
 * available balance into the user's held credits, then exactly one of `settleJobCredits` (the
 * hold becomes final) or `releaseJobCredits` (the hold comes back). `jobs.creditStatus` records
 * which, so repeated or late reports change nothing. A hold exists only with its job: nothing
 * else moves credits into or out of `reservedCredits`. Every change goes through
 * `applyCreditChange` (model/ledger.ts), the one balance check.
 */

export function assertPositiveCredits(credits: number): void {
  if (!Number.isSafeInteger(credits) || credits <= 0) {
    throw appError("INVALID_ARGUMENT", "credits must be a positive whole number.");
  }
}

export type ReserveResult =
  { ok: true; balance: number } | { ok: false; reason: "INSUFFICIENT_CREDITS"; balance: number };

/**
 * Holds the job's price (`creditsUsed`) for it: a `reserve` row taking it from the available
 * balance into `reservedCredits`. INSUFFICIENT_CREDITS (nothing written) if the balance does not
 * cover it. Called once per job, by `createJob`, in the transaction that inserts the job.
 */
export async function reserveJobCredits(ctx: MutationCtx, job: Doc<"jobs">): Promise<number> {
  assertPositiveCredits(job.creditsUsed);
  const user = await applyCreditChange(ctx, job.userId, {
    delta: -job.creditsUsed,
    reservedDelta: job.creditsUsed,
    kind: "reserve",
    jobId: job._id,
  });
  return user.credits;
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
 * Makes the job's hold final (the metrics count it as consumed): a `settle` row that
 * takes the price out of `reservedCredits`. Returns false (and writes nothing) unless the hold
 * is open.
 */
export async function settleJobCredits(ctx: MutationCtx, job: Doc<"jobs">): Promise<boolean> {
  if (job.creditStatus !== "held") {
    return false;
  }
  await ctx.db.patch("jobs", job._id, { creditStatus: "settled" });
  await settleHold(ctx, job);
  return true;
}

/** The ledger half of a settle; the caller marks the job `settled` in the same transaction. */
export async function settleHold(ctx: MutationCtx, job: Doc<"jobs">): Promise<void> {
  await applyCreditChange(ctx, job.userId, {
    delta: 0,
    reservedDelta: -job.creditsUsed,
    kind: "settle",
    jobId: job._id,
  });
}

/**
 * Gives the job's hold back (failed, canceled, timed out): a `release` row returning exactly
 * its price to the available balance. If the user owes credits to an executed refund, the
 * released credits pay that down first (`refund_paydown` rows), so a refund cannot be escaped
 * by holding credits in jobs while it executes. Returns false (and writes nothing) unless the
 * hold is open.
 */
export async function releaseJobCredits(ctx: MutationCtx, job: Doc<"jobs">): Promise<boolean> {
  if (job.creditStatus !== "held") {
    return false;
  }
  await ctx.db.patch("jobs", job._id, { creditStatus: "refunded" });
  await releaseHold(ctx, job);
  return true;
}

/** The ledger half of a release; the caller marks the job `refunded` in the same transaction. */
export async function releaseHold(ctx: MutationCtx, job: Doc<"jobs">): Promise<void> {
  const user = await applyCreditChange(ctx, job.userId, {
    delta: job.creditsUsed,
    reservedDelta: -job.creditsUsed,
    kind: "release",
    jobId: job._id,
  });
  await payDownOwedCredits(ctx, user, job.creditsUsed);
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

/** An operator's correction: a non-zero whole number of credits, with a note saying why. */
export async function grantAdjustment(
  ctx: MutationCtx,
  userId: Id<"users">,
  credits: number,
  note: string,
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
  const user = await applyCreditChange(ctx, userId, {
    delta: credits,
    kind: "adjustment",
    note: trimmed,
  });
  return user.credits;
}
