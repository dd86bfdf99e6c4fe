import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { addMonthsUtc } from "./calendar";
import { grantLot, lotKeys } from "./lots";

/**
 * What a payment's credits are and where they are. A payment's lots are every lot carrying its
 * id: the lot it granted, and what came out of it (the rollover of a period lot, returned lots
 * of its released holds, a bank-returned refund's reversal), so a refund reaches all of them.
 */

/** Lots of one payment read at most: its own, one rollover, a few returned and reversal lots. */
export const MAX_LOTS_PER_PAYMENT = 50;

export async function paymentLots(ctx: QueryCtx, paymentId: Id<"payments">) {
  return await ctx.db
    .query("creditLots")
    .withIndex("by_paymentId", (q) => q.eq("paymentId", paymentId))
    .take(MAX_LOTS_PER_PAYMENT);
}

/** Credits a payment still buys: what it gave (or will give) less what its refunds took back. */
export function creditsLeft(payment: Doc<"payments">): number {
  return Math.max(0, payment.creditsAdded - (payment.creditsReclaimed ?? 0));
}

/**
 * Credits worth what was paid, at the price per credit of the plan it was paid for (rounded
 * down): what a payment buys when what it was quoted for no longer holds.
 */
export function creditsWorthPaid(payment: Doc<"payments">): number {
  const listPrice = payment.listPrice ?? payment.amount;
  if (listPrice <= 0) return 0;
  return Math.min(
    payment.creditsPurchased,
    Math.floor((payment.amount * payment.creditsPurchased) / listPrice),
  );
}

/**
 * A payment's credits as a lot of their own, expiring a calendar month after they arrive; keyed
 * by the payment, so a replay grants nothing. Nothing when refunds took every credit back.
 */
export async function grantPurchaseLot(ctx: MutationCtx, payment: Doc<"payments">, note: string) {
  const credits = creditsLeft(payment);
  if (credits === 0) return;
  await grantLot(ctx, payment.userId, {
    kind: "purchase",
    source: "purchase",
    credits,
    expiresAt: addMonthsUtc(Date.now(), 1),
    sourceKey: lotKeys.purchase(payment._id),
    paymentId: payment._id,
    note,
  });
}
