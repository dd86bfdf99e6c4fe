import type { Doc } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { convertAvailable } from "./lots";
import { creditsLeft, creditsWorthPaid, grantPurchaseLot } from "./paymentCredits";
import { requirePlan } from "./plans";
import { beginPeriod, resumePaidPeriod } from "./subscriptionPeriods";
import { currentPlanLot, unusedCreditValue, upgradeQuoteHolds } from "./subscriptionQuotes";
import { creditPaidRenewal } from "./subscriptionRenewals";
import {
  currentSubscription,
  insertSubscription,
  isLive,
  updateSubscription,
} from "./subscriptionState";

/**
 * A subscription payment succeeded (first time; model/payments.ts checked). The quote rule: it
 * is applied exactly as quoted while its quote still describes the subscription (a start of the
 * `incomplete` subscription, an upgrade of the same plan, anchoring and period, the renewal of
 * the awaited period or of the grace's period). Otherwise it credits a one-month lot worth what
 * was paid (`creditsWorthPaid`), and never converts, downgrades or grants a period — except when
 * no subscription is live any more: a start or renewal then starts a new one from now (the
 * customer paid a plan's full price and gets it, never a silent renewal of an old one; a
 * deleted user's payment is only credited).
 * Returns what happened, and the payment with the credits it gave (`creditsAdded`).
 */
export async function applySubscriptionPayment(
  ctx: MutationCtx,
  paid: Doc<"payments">,
): Promise<{ message: string; payment: Doc<"payments"> }> {
  const now = Date.now();
  let payment = paid;
  const setCredits = async (credits: number) => {
    if (credits !== payment.creditsAdded) {
      await ctx.db.patch("payments", payment._id, { creditsAdded: credits });
      payment = { ...payment, creditsAdded: credits };
    }
  };
  const done = (message: string) => ({ message, payment });
  const sub = payment.subscriptionId
    ? await ctx.db.get("subscriptions", payment.subscriptionId)
    : null;
  const grant = { credits: creditsLeft(payment), paymentId: payment._id };

  if (sub !== null && payment.purpose === "start" && sub.status === "incomplete") {
    await beginPeriod(ctx, sub, payment.planName, now, 0, { ...grant, source: "period" });
    return done("subscription started");
  }
  if (payment.purpose === "upgrade" && upgradeQuoteHolds(payment, sub)) {
    // As quoted: the priced-in credits are converted; those spent meanwhile were not there to
    // convert, so the new plan lot is smaller by their value (rounded up: no value minted).
    const live = sub!;
    const lot = await currentPlanLot(ctx, live);
    const quoted = payment.creditsConverted ?? (lot === null ? 0 : lot.remaining - lot.held);
    const converted =
      lot === null
        ? 0
        : await convertAvailable(
            ctx,
            lot,
            quoted,
            `Upgrade to ${payment.planName}: unused credits converted`,
          );
    const spentValue = unusedCreditValue(quoted - converted, await requirePlan(ctx, live.plan));
    const listPrice = payment.listPrice ?? (await requirePlan(ctx, payment.planName)).price;
    const short = Math.ceil((spentValue * payment.creditsPurchased) / Math.max(1, listPrice));
    await setCredits(Math.max(0, payment.creditsPurchased - short));
    await creditPaidRenewal(ctx, live, `the upgrade to ${payment.planName}`);
    await beginPeriod(ctx, live, payment.planName, now, 0, {
      credits: creditsLeft(payment),
      paymentId: payment._id,
      source: "upgrade",
    });
    return done(
      short === 0
        ? "subscription upgraded"
        : `subscription upgraded (${short} credits less: priced-in credits were spent meanwhile)`,
    );
  }
  // A renewal pays for one period of one anchoring: never for a later period that happens to
  // have the same index after an upgrade or comp set the anchor again.
  const sameAnchoring =
    payment.generation === undefined || payment.generation === (sub?.generation ?? 0);
  if (payment.purpose === "renewal" && sub !== null && sameAnchoring) {
    if (
      sub.status === "active" &&
      sub.renewal?.paymentId === payment._id &&
      payment.periodIndex === sub.periodIndex + 1
    ) {
      await updateSubscription(ctx, sub, { renewal: { ...sub.renewal, status: "paid" } });
      return done("renewal paid; the next period starts at the period end");
    }
    if (sub.status === "past_due" && payment.periodIndex === sub.periodIndex) {
      // Paid within the grace (the scheduled renewal, or one made through createCheckout): the
      // period keeps its anchor dates and gets its lot now.
      await resumePaidPeriod(ctx, sub, { ...grant, source: "period" });
      return done("renewal paid within the grace");
    }
  }
  // The quote no longer holds.
  const live = await currentSubscription(ctx, payment.userId);
  const deleted = (await ctx.db.get("users", payment.userId))?.deletedAt !== undefined;
  if (isLive(live) || payment.purpose === "upgrade" || deleted) {
    await setCredits(creditsWorthPaid(payment));
    await grantPurchaseLot(
      ctx,
      payment,
      `Payment for the ${payment.planName} plan that no longer matched the subscription`,
    );
    return done("credited as a one-month lot (the subscription had moved on)");
  }
  const fresh =
    live?.status === "incomplete"
      ? live
      : await insertSubscription(ctx, payment.userId, payment.planName, payment.currency);
  await ctx.db.patch("payments", payment._id, { subscriptionId: fresh._id });
  await beginPeriod(ctx, fresh, payment.planName, now, 0, { ...grant, source: "period" });
  return done("a new subscription started (the old one had ended)");
}
