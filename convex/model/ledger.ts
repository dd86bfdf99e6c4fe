import type { Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import type { LedgerKind } from "../lib/validators";

export type CreditChange = {
  delta: number;
  kind: LedgerKind;
  jobId?: Id<"jobs">;
  paymentId?: Id<"payments">;
  note?: string;
};

/**
 * The only place a balance changes: patches `users.credits` and writes the matching ledger
 * row in the same transaction, so credits always equal the sum of the user's ledger deltas.
 * Refuses (without writing) a change that would make the balance negative.
 */
export async function applyCreditChange(
  ctx: MutationCtx,
  userId: Id<"users">,
  change: CreditChange,
): Promise<number> {
  if (!Number.isSafeInteger(change.delta)) {
    throw appError("INVALID_ARGUMENT", "credits must be a whole number.");
  }
  const user = await ctx.db.get("users", userId);
  if (user === null) {
    throw appError("NOT_FOUND", "User not found.");
  }
  const balanceAfter = user.credits + change.delta;
  if (balanceAfter < 0) {
    throw appError(
      "INSUFFICIENT_CREDITS",
      `Not enough credits: ${user.credits} available, ${-change.delta} needed.`,
    );
  }
  if (change.delta !== 0) {
    await ctx.db.patch("users", userId, { credits: balanceAfter });
  }
  await ctx.db.insert("ledger", {
    userId,
    delta: change.delta,
    balanceAfter,
    kind: change.kind,
    jobId: change.jobId,
    paymentId: change.paymentId,
    note: change.note,
    createdAt: Date.now(),
  });
  return balanceAfter;
}
