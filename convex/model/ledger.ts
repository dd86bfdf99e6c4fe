import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import type { LedgerKind } from "../lib/validators";

/**
 * A change of one user's balance. The balance has three parts, all cached on the user row:
 * - `credits` (available): what can be spent now;
 * - `reservedCredits`: held by the user's unfinished jobs (only a job's reserve puts credits
 *   here, only that job's settle or release takes them out);
 * - `owedCredits`: credits of refunded payments that were spent or held when the refund
 *   executed; released holds pay them down first (see model/credits.ts).
 */
export type CreditChange = {
  /** Signed change of available credits. */
  delta: number;
  /** Signed change of credits held by jobs. */
  reservedDelta?: number;
  /** Signed change of credits owed to refunds. */
  owedDelta?: number;
  kind: LedgerKind;
  jobId?: Id<"jobs">;
  paymentId?: Id<"payments">;
  refundId?: Id<"refunds">;
  note?: string;
};

/** A balance is a JavaScript number: no part (nor their sum) may pass 2^53 - 1. */
export const MAX_BALANCE = Number.MAX_SAFE_INTEGER;

/**
 * The only place a balance changes: checks the change once (whole numbers; no part below zero;
 * nothing above `MAX_BALANCE`), patches the user row and writes the matching ledger row in the
 * same transaction, so each part always equals the sum of its ledger column. A refused change
 * writes nothing: INSUFFICIENT_CREDITS when available credits would go negative, INVALID_ARGUMENT
 * otherwise.
 */
export async function applyCreditChange(
  ctx: MutationCtx,
  userId: Id<"users">,
  change: CreditChange,
): Promise<Doc<"users">> {
  const reservedDelta = change.reservedDelta ?? 0;
  const owedDelta = change.owedDelta ?? 0;
  if (![change.delta, reservedDelta, owedDelta].every(Number.isSafeInteger)) {
    throw appError("INVALID_ARGUMENT", "credits must be a whole number.");
  }
  const user = await ctx.db.get("users", userId);
  if (user === null) {
    throw appError("NOT_FOUND", "User not found.");
  }
  const credits = user.credits + change.delta;
  const reservedCredits = (user.reservedCredits ?? 0) + reservedDelta;
  const owedCredits = (user.owedCredits ?? 0) + owedDelta;
  if (credits < 0) {
    throw appError(
      "INSUFFICIENT_CREDITS",
      `Not enough credits: ${user.credits} available, ${-change.delta} needed.`,
    );
  }
  if (reservedCredits < 0 || owedCredits < 0) {
    // A release or settle without its hold, or a pay-down without a debt: a bug, never data.
    throw new Error(`Credit change ${change.kind} would make reserved or owed credits negative.`);
  }
  if (credits + reservedCredits > MAX_BALANCE || owedCredits > MAX_BALANCE) {
    throw appError("INVALID_ARGUMENT", `A balance cannot exceed ${MAX_BALANCE} credits.`);
  }
  const patch: Partial<Doc<"users">> = {};
  if (change.delta !== 0) patch.credits = credits;
  if (reservedDelta !== 0) patch.reservedCredits = reservedCredits;
  if (owedDelta !== 0) patch.owedCredits = owedCredits;
  if (Object.keys(patch).length > 0) {
    await ctx.db.patch("users", userId, patch);
  }
  await ctx.db.insert("ledger", {
    userId,
    delta: change.delta,
    balanceAfter: credits,
    ...(reservedDelta !== 0 ? { reservedDelta } : {}),
    ...(owedDelta !== 0 ? { owedDelta } : {}),
    kind: change.kind,
    jobId: change.jobId,
    paymentId: change.paymentId,
    refundId: change.refundId,
    note: change.note,
    createdAt: Date.now(),
  });
  return { ...user, ...patch };
}
