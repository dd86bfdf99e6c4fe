import type { Doc } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import {
  RETURNED_LOT_TTL_MS,
  availableOf,
  changeLot,
  expireLot,
  grantLot,
  lotKeys,
  refreshNextExpiry,
  spendingOrder,
  type VoidMarkHook,
} from "./lots";
import { spendableLots } from "./lotHolds";
import { paymentLots } from "./paymentCredits";
import { refreshRefundSummary, refundsOfPayment } from "./refunds";
import { refundAwaitedRenewal } from "./subscriptionRenewals";

/**
 * The credits of refunds (model/refunds.ts has their rows and events): how many an executed
 * refund takes back, taking them from every lot of its payment, following the held ones it
 * marked, and giving them back when the bank returns the refund.
 */

/**
 * The credits a refund of `amount` takes back when `alreadyRefunded` minor units of the payment
 * were refunded before it: the payment's credits in proportion, rounded down, counted
 * cumulatively (refunds adding up to the whole payment take back all of its credits).
 */
export function creditsForRefund(
  payment: Pick<Doc<"payments">, "amount" | "creditsAdded">,
  alreadyRefunded: number,
  amount: number,
): number {
  if (payment.amount <= 0) {
    return 0;
  }
  const before = Math.min(alreadyRefunded, payment.amount);
  const after = Math.min(alreadyRefunded + amount, payment.amount);
  const share = (paid: number) => Math.floor((payment.creditsAdded * paid) / payment.amount);
  return share(after) - share(before);
}

// ---------------------------------------------------------------------------------------------
// Voiding the payment's lots

/**
 * Takes a refund's `due` credits back from its payment's lots (its own and those that came out
 * of it), in spending order: available ones are voided now (`void`); held ones are marked
 * (`voidOnRelease`) and voided as their jobs release them; the rest (consumed or expired) is
 * outstanding. Lots past their expiry expire first (a period lot rolls over into a lot of the
 * same payment, which is then reached). A paid renewal awaiting its period has no lot: that
 * period will grant less. A payment whose credits were all spent before lots existed has none
 * either: its due credits are outstanding (a balance not converted yet is refused).
 */
export async function voidPaymentLots(
  ctx: MutationCtx,
  payment: Doc<"payments">,
  refund: Doc<"refunds">,
  due: number,
): Promise<{ reclaimed: number; pending: number; outstanding: number }> {
  const entry = {
    kind: "void" as const,
    paymentId: payment._id,
    refundId: refund._id,
    note: `Refund ${refund.trueLayerRefundId ?? refund._id} of payment ${payment._id}`,
  };
  const now = Date.now();
  for (const lot of await paymentLots(ctx, payment._id)) {
    await expireLot(ctx, lot, now);
  }
  const lots = await paymentLots(ctx, payment._id);
  if (lots.length === 0 && (await refundAwaitedRenewal(ctx, payment, due))) {
    return { reclaimed: due, pending: 0, outstanding: 0 };
  }
  if (lots.length === 0 && due > 0) {
    // Its credits were spent before lots existed (the migration gave what was left of them a
    // lot), unless the user's balance is not converted yet: refused, never guessed.
    await spendableLots(ctx, (await ctx.db.get("users", payment.userId))!);
  }
  let reclaimed = 0;
  let pending = 0;
  for (const lot of lots.sort(spendingOrder)) {
    const take = Math.min(due - reclaimed, availableOf(lot));
    if (take > 0) {
      await changeLot(ctx, lot, { remaining: lot.remaining - take }, entry);
      reclaimed += take;
    }
  }
  for (const lot of await paymentLots(ctx, payment._id)) {
    const mark = Math.min(due - reclaimed - pending, lot.held - (lot.voidOnRelease ?? 0));
    if (mark <= 0) continue;
    const nothingLeft = lot.status === "active" && lot.remaining === lot.held;
    await changeLot(
      ctx,
      lot,
      {
        voidOnRelease: (lot.voidOnRelease ?? 0) + mark,
        // Nothing of it is left to spend: what it still holds is voided on release.
        ...(nothingLeft && lot.held === (lot.voidOnRelease ?? 0) + mark
          ? { status: "voided" as const }
          : {}),
      },
      entry,
    );
    pending += mark;
  }
  await refreshNextExpiry(ctx, payment.userId);
  return { reclaimed, pending, outstanding: due - reclaimed - pending };
}

/**
 * Registered with the credit core (lib/triggers.ts): a held credit of a refunded payment's lot
 * left its hold: voided (the refund got it back) or consumed (its job finished first:
 * outstanding). Moves it on the payment's oldest refunds still waiting for held credits.
 */
export const onVoidMark: VoidMarkHook = async (ctx, lot, credits, outcome) => {
  if (lot.paymentId === undefined) {
    return;
  }
  let left = credits;
  for (const refund of await refundsOfPayment(ctx, lot.paymentId)) {
    const pending = refund.pendingCredits ?? 0;
    if (left === 0) break;
    if (refund.status !== "executed" || pending === 0) continue;
    const moved = Math.min(left, pending);
    left -= moved;
    await ctx.db.patch("refunds", refund._id, {
      pendingCredits: pending - moved || undefined,
      ...(outcome === "voided"
        ? { creditsReclaimed: refund.creditsReclaimed + moved }
        : { outstandingCredits: refund.outstandingCredits + moved }),
    });
  }
  await refreshRefundSummary(ctx, lot.paymentId);
};

/**
 * A refund that executed and then failed (a bank returned it) gives back what it voided, as an
 * adjustment lot of the same payment (a later refund reaches it) expiring when the payment's
 * lots would have (7 days from now if that passed), and unmarks the held credits it was still
 * waiting for. A renewal awaiting its period gets nothing here: its period grants it again
 * (`reinstateRenewalAfterReversal`).
 */
export async function reverseVoid(ctx: MutationCtx, refund: Doc<"refunds">, why: string) {
  const lots = await paymentLots(ctx, refund.paymentId);
  let unmark = refund.pendingCredits ?? 0;
  for (const lot of lots) {
    const take = Math.min(unmark, lot.voidOnRelease ?? 0);
    if (take === 0) continue;
    await changeLot(
      ctx,
      lot,
      { voidOnRelease: (lot.voidOnRelease ?? 0) - take },
      { kind: "refund_reversal", refundId: refund._id },
    );
    unmark -= take;
  }
  const payment = (await ctx.db.get("payments", refund.paymentId))!;
  if (refund.creditsReclaimed === 0 || (lots.length === 0 && payment.purpose === "renewal")) {
    return;
  }
  const now = Date.now();
  const latest = Math.max(0, ...lots.map((lot) => lot.expiresAt ?? 0));
  const neverExpires = lots.some((lot) => lot.expiresAt === undefined);
  await grantLot(ctx, refund.userId, {
    kind: "refund_reversal",
    source: "adjustment",
    credits: refund.creditsReclaimed,
    expiresAt: neverExpires ? undefined : latest > now ? latest : now + RETURNED_LOT_TTL_MS,
    sourceKey: lotKeys.reversal(refund._id),
    paymentId: refund.paymentId,
    refundId: refund._id,
    note: `${why}: voided credits given back`,
  });
}
