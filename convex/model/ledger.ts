import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import type { LedgerKind } from "../lib/validators";

/**
 * A change of one user's balance. The balance has two parts, both cached on the user row and
 * both sums over the user's credit lots (model/lots.ts, the only caller besides plan changes):
 * - `credits` (available): what can be spent now, Σ (remaining − held) over active lots;
 * - `reservedCredits`: held by the user's unfinished jobs, Σ held over all lots.
 */
export type CreditChange = {
  /** Signed change of available credits. */
  delta: number;
  /** Signed change of credits held by jobs. */
  reservedDelta?: number;
  kind: LedgerKind;
  jobId?: Id<"jobs">;
  paymentId?: Id<"payments">;
  refundId?: Id<"refunds">;
  lotId?: Id<"creditLots">;
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
  if (![change.delta, reservedDelta].every(Number.isSafeInteger)) {
    throw appError("INVALID_ARGUMENT", "credits must be a whole number.");
  }
  const user = await ctx.db.get("users", userId);
  if (user === null) {
    throw appError("NOT_FOUND", "User not found.");
  }
  const credits = user.credits + change.delta;
  const reservedCredits = (user.reservedCredits ?? 0) + reservedDelta;
  if (credits < 0) {
    throw appError(
      "INSUFFICIENT_CREDITS",
      `Not enough credits: ${user.credits} available, ${-change.delta} needed.`,
    );
  }
  if (reservedCredits < 0) {
    // A release or settle without its hold: a bug, never data.
    throw new Error(`Credit change ${change.kind} would make reserved credits negative.`);
  }
  if (credits + reservedCredits > MAX_BALANCE) {
    throw appError("INVALID_ARGUMENT", `A balance cannot exceed ${MAX_BALANCE} credits.`);
  }
  const patch: Partial<Doc<"users">> = {};
  if (change.delta !== 0) patch.credits = credits;
  if (reservedDelta !== 0) patch.reservedCredits = reservedCredits;
  if (Object.keys(patch).length > 0) {
    await ctx.db.patch("users", userId, patch);
  }
  await ctx.db.insert("ledger", {
    userId,
    delta: change.delta,
    balanceAfter: credits,
    ...(reservedDelta !== 0 ? { reservedDelta } : {}),
    kind: change.kind,
    jobId: change.jobId,
    paymentId: change.paymentId,
    refundId: change.refundId,
    lotId: change.lotId,
    note: change.note,
    createdAt: Date.now(),
  });
  return { ...user, ...patch };
}
