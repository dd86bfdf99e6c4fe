import { internal } from "../_generated/api";
import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { trueLayerCurrency } from "../lib/truelayer";
import { renewalCreationPool } from "../lib/workpools";
import { creditsLeft, grantPurchaseLot, paymentLots } from "./paymentCredits";
import { failPayment, insertPendingPayment } from "./payments";
import { requirePlan } from "./plans";
import { applySubscriptionPayment } from "./subscriptionPayments";
import { chooseRenewalMethod } from "./mandateRenewals";
import {
  DUNNING_RETRY_OFFSETS_MS,
  RENEWAL_RETRY_BASE_MS,
  RENEWAL_RETRY_MAX_MS,
  nextPeriodPlan,
  paidRenewal,
  renewalDueAtOf,
  renewalLeadMs,
  updateSubscription,
  type Subscription,
} from "./subscriptionState";

/**
 * Renewals: the payment of the next period, created `renewalLeadMs()` before the period ends (3
 * days; 7 with Direct Debit mandates) when `renewalDueAt` comes (the scheduled `startRenewal`,
 * or the sweep), and handed to TrueLayer by the `createRenewal` action, run through the renewal
 * creation workpool (lib/workpools.ts: a bounded number of TrueLayer calls in flight however
 * many renewals fall due at once, a failed call retried within seconds). Paid before the period
 * ends, the period begins at its start (model/subscriptionPeriods.ts). One TrueLayer could not
 * create is tried again with backoff until the period ends; one the payer's bank refused waits
 * for the grace (`past_due`), where a charge on a mandate is retried on the dunning schedule.
 */

/**
 * Records the renewal payment of the period after the one ending at `end` (keyed by `end` and by
 * `renewalDueAt`: nothing unless a renewal is due now) and enqueues its creation with TrueLayer.
 * On the user's authorised mandate when it fits (model/mandateRenewals.ts), else on the hosted
 * page. A past_due subscription's renewal due again is the next dunning charge of its grace's
 * period on the mandate (`dunningRetryAt`): a new payment with a key of its own.
 */
export async function startRenewal(
  ctx: MutationCtx,
  subscriptionId: Id<"subscriptions">,
  end: number,
  now: number,
): Promise<Id<"payments"> | null> {
  const sub = await ctx.db.get("subscriptions", subscriptionId);
  const due = sub === null ? undefined : renewalDueAtOf(sub);
  if (sub === null || sub.currentPeriodEnd !== end || due === undefined || now < due) {
    if (sub !== null && sub.renewalDueAt !== due) {
      // A `renewalDueAt` left by older code (a cancel that did not clear it): written as it is
      // now, so the sweep does not pick the subscription again and again.
      await updateSubscription(ctx, sub, {});
    }
    return null;
  }
  const dunning = sub.status === "past_due";
  // A dunning charge pays the grace's period, on its plan (a downgrade waits for its end).
  const plan = await requirePlan(ctx, dunning ? sub.plan : nextPeriodPlan(sub));
  const next = dunning ? sub.periodIndex : sub.periodIndex + 1;
  const currency = trueLayerCurrency();
  const earlier = sub.renewal?.periodIndex === next ? sub.renewal : undefined;
  const refusals = earlier?.refusals ?? 0;
  // A charge tried again after TrueLayer could not create it keeps its backoff (`attempts`,
  // `retryAt`); a refusal cleared them: the next dunning charge is a new attempt.
  const attempts = earlier?.attempts;
  const choice = await chooseRenewalMethod(
    ctx,
    sub.userId,
    plan.price,
    currency,
    now,
    attempts ?? 0,
  );
  const mandate = choice.method === "mandate" ? choice.mandate : undefined;
  const paymentId = await insertPendingPayment(ctx, {
    userId: sub.userId,
    subscriptionId,
    purpose: "renewal",
    amount: plan.price,
    listPrice: plan.price,
    creditsPurchased: plan.monthlyCredits,
    planName: plan.name,
    currency,
    periodIndex: next,
    generation: sub.generation ?? 0,
    ...(mandate ? { method: "mandate", mandateId: mandate._id, chargeAttempt: refusals } : {}),
  });
  await updateSubscription(ctx, sub, {
    renewal: {
      paymentId,
      periodIndex: next,
      dueAt: dunning ? sub.currentPeriodStart! : end,
      amount: plan.price,
      currency,
      status: "pending",
      payUrl: null,
      planName: plan.name,
      attempts,
      retryAt: earlier?.retryAt,
      method: choice.method,
      refusals: refusals === 0 ? undefined : refusals,
      fallbackReason: choice.method === "manual" ? choice.fallbackReason : undefined,
    },
  });
  await enqueueRenewalCreation(ctx, paymentId);
  return paymentId;
}

/**
 * `createRenewal` for the payment, through the renewal creation workpool: its tries are retried
 * with backoff, and `renewalCreationFinished` hears when they all failed.
 */
async function enqueueRenewalCreation(ctx: MutationCtx, paymentId: Id<"payments">) {
  await renewalCreationPool.enqueueAction(
    ctx,
    internal.subscriptions.createRenewal,
    { paymentId },
    {
      onComplete: internal.subscriptions.renewalCreationFinished,
      onCompleteExcludeKinds: ["success"],
      context: { paymentId },
    },
  );
}

/** The subscription whose current renewal is `paymentId`, if it still is. */
async function subscriptionRenewedBy(ctx: MutationCtx, payment: Doc<"payments">) {
  const sub = payment.subscriptionId
    ? await ctx.db.get("subscriptions", payment.subscriptionId)
    : null;
  return sub?.renewal?.paymentId === payment._id ? sub : null;
}

/** TrueLayer accepted the renewal payment: its hosted payment page link, for the front end. */
export async function attachRenewalUrl(
  ctx: MutationCtx,
  paymentId: Id<"payments">,
  payUrl: string | null,
) {
  const payment = await ctx.db.get("payments", paymentId);
  const sub = payment && (await subscriptionRenewedBy(ctx, payment));
  if (sub) {
    await updateSubscription(ctx, sub, { renewal: { ...sub.renewal!, payUrl } });
  }
}

/**
 * TrueLayer could not create the renewal payment (an outage, or payments not configured): the
 * payment fails and, when `retry`, the renewal is due again after a backoff (10 min, doubling,
 * at most 6 h between tries), counted from when it first fell due so a late run does not push
 * the schedule, while that is before the period ends. The sweep (every 10 minutes) makes it.
 * Keyed by the payment: only one still waiting for TrueLayer fails (a repeated or late report,
 * or one about a payment TrueLayer created meanwhile, changes nothing).
 */
export async function renewalCreationFailed(
  ctx: MutationCtx,
  paymentId: Id<"payments">,
  reason: string,
  retry: boolean,
) {
  const payment = await ctx.db.get("payments", paymentId);
  if (payment?.status !== "pending" || payment.trueLayerTxnId !== "") return;
  await failPayment(ctx, payment, reason, "provider");
  const sub = await subscriptionRenewedBy(ctx, payment);
  if (sub === null || !retry) return;
  const renewal = sub.renewal!;
  const attempts = (renewal.attempts ?? 0) + 1;
  // When this charge first fell due: the backoff counts from there, not from a late run.
  const firstTry =
    sub.status === "past_due"
      ? sub.currentPeriodStart! + DUNNING_RETRY_OFFSETS_MS[(renewal.refusals ?? 1) - 1]
      : renewal.dueAt - renewalLeadMs();
  await updateSubscription(ctx, sub, {
    renewal: {
      ...renewal,
      status: "failed",
      attempts,
      retryAt: nextRenewalTry(renewal.retryAt ?? firstTry, attempts),
    },
  });
}

/** When a renewal TrueLayer refused `attempts` times is tried again, after the last try's time. */
export function nextRenewalTry(lastTry: number, attempts: number): number {
  return lastTry + Math.min(RENEWAL_RETRY_BASE_MS * 2 ** (attempts - 1), RENEWAL_RETRY_MAX_MS);
}

/**
 * A renewal payment failed (payments' one failure path calls this): shown on the subscription.
 * A charge on a mandate the payer's bank refused counts as a refusal: the next dunning charge
 * falls due by their number (`dunningRetryAt`).
 */
export async function onRenewalPaymentFailed(
  ctx: MutationCtx,
  payment: Doc<"payments">,
  kind: NonNullable<Doc<"payments">["failureKind"]>,
) {
  const sub = await subscriptionRenewedBy(ctx, payment);
  if (sub?.renewal?.status === "pending") {
    const refused = kind === "payment" && payment.method === "mandate";
    await updateSubscription(ctx, sub, {
      renewal: {
        ...sub.renewal,
        status: "failed",
        ...(refused
          ? { refusals: (sub.renewal.refusals ?? 0) + 1, attempts: undefined, retryAt: undefined }
          : {}),
      },
    });
  }
}

/**
 * A pending renewal no longer fits the subscription (a downgrade, a cancel, a comp, a deletion):
 * its payment is dropped (`superseded`, not a failed renewal) and the subscription has no
 * renewal any more (one is made anew when due). Returns the subscription as it is now. A charge
 * on a mandate TrueLayer has already created is kept: nobody can call it back, so it stands
 * like a paid renewal (a cancel ends the subscription after the period it pays, a downgrade
 * waits for that period's end; a comp or a deletion leaves it to the quote rule).
 */
export async function dropPendingRenewal(ctx: MutationCtx, sub: Subscription, why: string) {
  if (sub.renewal?.status !== "pending") {
    return sub;
  }
  const payment = await ctx.db.get("payments", sub.renewal.paymentId);
  if (payment?.method === "mandate" && payment.trueLayerTxnId !== "") {
    return sub;
  }
  const next = await updateSubscription(ctx, sub, { renewal: undefined });
  if (payment !== null) {
    await failPayment(ctx, payment, `superseded: ${why}`, "superseded");
  }
  return next;
}

/**
 * The anchor is about to be set again (upgrade, comp) while the next period is already paid:
 * that period will never begin, so its payment's credits become a lot of their own now.
 */
export async function creditPaidRenewal(ctx: MutationCtx, sub: Subscription, why: string) {
  const renewal = paidRenewal(sub);
  if (renewal === null) return;
  const payment = (await ctx.db.get("payments", renewal.paymentId))!;
  await grantPurchaseLot(
    ctx,
    payment,
    `Renewal for the ${payment.planName} plan, paid for a period replaced by ${why}`,
  );
}

/**
 * A refund executed on a paid renewal whose period has not begun: there is no lot to take
 * credits back from, the period will grant less (`creditsLeft`); refunded in full, the renewal
 * no longer counts as paid. Returns whether the payment was such a renewal.
 */
export async function refundAwaitedRenewal(
  ctx: MutationCtx,
  payment: Doc<"payments">,
  due: number,
) {
  const sub = payment.purpose === "renewal" ? await subscriptionRenewedBy(ctx, payment) : null;
  const renewal = sub === null ? null : paidRenewal(sub);
  if (sub === null || renewal === null) {
    return false;
  }
  if (creditsLeft(payment) - due <= 0) {
    await updateSubscription(ctx, sub, { renewal: { ...renewal, status: "failed" } });
  }
  return true;
}

/**
 * A refund of a renewal whose credits were never granted (it was awaiting its period) came back
 * (the bank returned it): the money is ours again, so the payment counts as paid again — as the
 * awaited renewal if it still is, else by the quote rule (the grace's period, or what it bought).
 * Returns false when the payment's credits were granted as lots (reversed the ordinary way).
 */
export async function reinstateRenewalAfterReversal(
  ctx: MutationCtx,
  paymentId: Id<"payments">,
): Promise<boolean> {
  const payment = (await ctx.db.get("payments", paymentId))!;
  if (payment.purpose !== "renewal" || (await paymentLots(ctx, paymentId)).length > 0) {
    return false;
  }
  const sub = await subscriptionRenewedBy(ctx, payment);
  if (sub?.renewal?.status === "failed" && sub.renewal.periodIndex === sub.periodIndex + 1) {
    await updateSubscription(ctx, sub, { renewal: { ...sub.renewal, status: "paid" } });
    return true;
  }
  if (sub?.renewal?.status === "paid") {
    return true; // still awaited: its period grants what the refunds now leave
  }
  await applySubscriptionPayment(ctx, payment);
  return true;
}
