import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import { applyCreditChange } from "./ledger";
import { recordCreditsConsumed } from "./metrics";

/**
 * Two-phase credit transfers, per job: `reserve` takes the credits off the available balance
 * (a hold), then exactly one of `settle` (the hold becomes final) or `refund` (the hold is
 * returned). `jobs.creditStatus` records which, so repeated or late reports change nothing.
 */

export function assertPositiveCredits(credits: number): void {
  if (!Number.isSafeInteger(credits) || credits <= 0) {
    throw appError("INVALID_ARGUMENT", "credits must be a positive whole number.");
  }
}

export type ReserveResult =
  { ok: true; balance: number } | { ok: false; reason: "INSUFFICIENT_CREDITS"; balance: number };

/** Deducts `credits` from the available balance if it covers them; otherwise changes nothing. */
export async function reserveCredits(
  ctx: MutationCtx,
  userId: Id<"users">,
  credits: number,
  jobId?: Id<"jobs">,
): Promise<ReserveResult> {
  assertPositiveCredits(credits);
  const user = await ctx.db.get("users", userId);
  if (user === null) {
    throw appError("NOT_FOUND", "User not found.");
  }
  if (user.credits < credits) {
    return { ok: false, reason: "INSUFFICIENT_CREDITS", balance: user.credits };
  }
  const balance = await applyCreditChange(ctx, userId, { delta: -credits, kind: "reserve", jobId });
  await ctx.db.patch("users", userId, { reservedCredits: (user.reservedCredits ?? 0) + credits });
  return { ok: true, balance };
}

async function releaseHold(ctx: MutationCtx, userId: Id<"users">, credits: number) {
  const user = (await ctx.db.get("users", userId))!;
  await ctx.db.patch("users", userId, {
    reservedCredits: Math.max(0, (user.reservedCredits ?? 0) - credits),
  });
}

/**
 * Makes the job's hold final (counted as credits consumed in the metrics). Returns false (and
 * writes nothing) unless the hold is open.
 */
export async function settleJobCredits(ctx: MutationCtx, job: Doc<"jobs">): Promise<boolean> {
  if (job.creditStatus !== "held") {
    return false;
  }
  await ctx.db.patch("jobs", job._id, { creditStatus: "settled" });
  // The credits left the balance at reserve time: the settle row records the charge with delta 0.
  await applyCreditChange(ctx, job.userId, { delta: 0, kind: "settle", jobId: job._id });
  await releaseHold(ctx, job.userId, job.creditsUsed);
  await recordCreditsConsumed(ctx, job, job.creditsUsed);
  return true;
}

/** Returns exactly what the job reserved. Returns false (and writes nothing) unless the hold is open. */
export async function refundJobCredits(ctx: MutationCtx, job: Doc<"jobs">): Promise<boolean> {
  if (job.creditStatus !== "held") {
    return false;
  }
  await ctx.db.patch("jobs", job._id, { creditStatus: "refunded" });
  await applyCreditChange(ctx, job.userId, {
    delta: job.creditsUsed,
    kind: "refund",
    jobId: job._id,
  });
  await releaseHold(ctx, job.userId, job.creditsUsed);
  return true;
}

/** A job reserves exactly once (`createJob` does it): reserving again for it is a CONFLICT. */
export async function assertJobCanReserve(
  ctx: MutationCtx,
  userId: Id<"users">,
  jobId: Id<"jobs">,
): Promise<void> {
  const job = await ctx.db.get("jobs", jobId);
  if (job === null) {
    throw appError("NOT_FOUND", "Job not found.");
  }
  if (job.userId !== userId) {
    throw appError("INVALID_ARGUMENT", "jobId belongs to another user.");
  }
  const existing = await ctx.db
    .query("ledger")
    .withIndex("by_jobId", (q) => q.eq("jobId", jobId))
    .first();
  if (existing !== null) {
    throw appError("CONFLICT", "This job already holds its reservation.");
  }
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
  return await applyCreditChange(ctx, userId, {
    delta: credits,
    kind: "adjustment",
    note: trimmed,
  });
}
