import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import type { TrueLayerEvent } from "../lib/truelayer";
import { grantPurchaseLot } from "./paymentCredits";
import { requirePlan } from "./plans";
import { applyRefundEvent, isSucceeded } from "./refunds";
import { isWebhookEventRecorded, recordWebhookEvent } from "./webhookEvents";
import { applySubscriptionPayment } from "./subscriptionPayments";
import { currentCheckoutQuote, quoteCheckout } from "./subscriptionQuotes";
import { onRenewalPaymentFailed } from "./subscriptionRenewals";
import { changePlan, requireActiveUserByClerkId } from "./users";
import type { WebhookOutcome } from "../lib/validators";

/**
 * Payments (refunds: model/refunds.ts). Every function here runs inside one mutation, so each
 * status check and the credit change it guards commit together: a payment is credited at most
 * once, whatever the number or order of webhook deliveries.
 */

/** Fields of a payment only operators see (`payments.listPayments` leaves them out). */
export const INTERNAL_PAYMENT_FIELDS = [
  "userId",
  "trueLayerTxnId",
  "resourceToken",
  "outstandingCredits",
] as const;

const applied = (message: string): WebhookOutcome => ({ outcome: "applied", message });
const ignored = (message: string): WebhookOutcome => ({ outcome: "ignored", message });

// ---------------------------------------------------------------------------------------------
// Checkout

/** What a payment is quoted for: everything of it but its status and outcome fields. */
export type PaymentQuote = Omit<
  Doc<"payments">,
  | "_id"
  | "_creationTime"
  | "trueLayerTxnId"
  | "resourceToken"
  | "creditsAdded"
  | "timestamp"
  | "status"
  | "failureReason"
  | "failureKind"
  | "succeededAt"
  | "refundStatus"
  | "refundedAmount"
  | "creditsReclaimed"
  | "outstandingCredits"
>;

/**
 * The one way a payment is recorded: `pending`, with its quote (price, credits, plan, purpose
 * and what it was priced for) fixed now, so re-seeding plans or a change of the subscription
 * before it succeeds cannot change what was paid or what it buys. TrueLayer's id is attached
 * once known (webhooks never match the empty one).
 */
export async function insertPendingPayment(ctx: MutationCtx, quote: PaymentQuote) {
  return await ctx.db.insert("payments", {
    ...quote,
    trueLayerTxnId: "",
    creditsAdded: 0,
    timestamp: Date.now(),
    status: "pending",
  });
}

/**
 * How long after its creation a pending checkout is handed out again instead of a new TrueLayer
 * payment. TrueLayer's resource token (what its payment page runs on) is short-lived: its docs
 * do not state the lifetime in what we could find, and an example payment response marks it
 * "15 min expiry". Reusing only within the first 10 minutes leaves a reused page at least 5
 * minutes, the conservative side of that.
 */
export const CHECKOUT_REUSE_MS = 10 * 60 * 1000;

/**
 * How many of the user's payments of the last `CHECKOUT_REUSE_MS` a checkout looks through for
 * one to reuse (new checkouts are rate-limited to a few per 10 minutes).
 */
const REUSE_CANDIDATES = 10;

/** Whether `payment` was recorded for exactly `quote` (same user, purpose, plan, amount, period…). */
function isForQuote(payment: Doc<"payments">, quote: PaymentQuote): boolean {
  const fields = new Set([
    ...Object.keys(quote),
    "periodIndex",
    "generation",
    "fromPlan",
    "creditsConverted",
  ]);
  return [...fields].every(
    (field) => payment[field as keyof PaymentQuote] === quote[field as keyof PaymentQuote],
  );
}

/**
 * The caller's pending checkout that a checkout of `planName` now may hand out again: recorded
 * for exactly the quote it would record (`currentCheckoutQuote`), created with TrueLayer (its id
 * and resource token kept), less than `CHECKOUT_REUSE_MS` before `now`. Null when there is none;
 * the errors of `startCheckout` for a caller or plan that cannot check out.
 */
export async function findReusableCheckout(
  ctx: QueryCtx,
  clerkId: string,
  planName: string,
  currency: string,
  now: number,
) {
  const user = await requireActiveUserByClerkId(ctx, clerkId);
  await requirePlan(ctx, planName);
  const quote = await currentCheckoutQuote(ctx, user, planName, currency);
  if (quote === null) return null;
  const recent = await ctx.db
    .query("payments")
    .withIndex("by_userId", (q) =>
      q.eq("userId", user._id).gt("timestamp", now - CHECKOUT_REUSE_MS),
    )
    .order("desc")
    .take(REUSE_CANDIDATES);
  const payment = recent.find(
    (p) =>
      p.status === "pending" &&
      p.trueLayerTxnId !== "" &&
      p.resourceToken !== undefined &&
      isForQuote(p, quote),
  );
  return payment === undefined
    ? null
    : {
        paymentId: payment._id,
        amount: payment.amount,
        currency: payment.currency,
        planName: payment.planName,
        trueLayerPaymentId: payment.trueLayerTxnId,
        resourceToken: payment.resourceToken!,
      };
}

/** A checkout: the quote for the user's subscription (model/subscriptionQuotes.ts), recorded. */
export async function startCheckout(
  ctx: MutationCtx,
  clerkId: string,
  planName: string,
  currency: string,
) {
  const user = await requireActiveUserByClerkId(ctx, clerkId);
  await requirePlan(ctx, planName);
  const quote = await quoteCheckout(ctx, user, planName, currency);
  const paymentId = await insertPendingPayment(ctx, quote);
  return {
    paymentId,
    amount: quote.amount,
    currency,
    planName: quote.planName,
    email: user.email,
  };
}

/** Stores TrueLayer's payment id on our pending payment. */
export async function attachTrueLayerPayment(
  ctx: MutationCtx,
  paymentId: Id<"payments">,
  trueLayerPaymentId: string,
  resourceToken: string,
): Promise<void> {
  const payment = await ctx.db.get("payments", paymentId);
  if (payment === null) {
    throw appError("NOT_FOUND", "Payment not found.");
  }
  if (payment.trueLayerTxnId === "") {
    await ctx.db.patch("payments", paymentId, {
      trueLayerTxnId: trueLayerPaymentId,
      resourceToken,
    });
  } else if (payment.trueLayerTxnId !== trueLayerPaymentId) {
    throw appError("CONFLICT", "Payment is already linked to another TrueLayer payment.");
  }
}

/**
 * The one way a payment fails: a pending (or already failed) payment becomes `failed` with the
 * reason and its kind (TrueLayer refused to create it, the payer's bank refused it, or we dropped
 * it); a renewal's subscription shows it. A succeeded payment never fails. Returns whether it
 * changed.
 */
export async function failPayment(
  ctx: MutationCtx,
  payment: Doc<"payments">,
  reason: string,
  kind: NonNullable<Doc<"payments">["failureKind"]>,
): Promise<boolean> {
  if (payment.status !== "pending") {
    return false;
  }
  await ctx.db.patch("payments", payment._id, {
    status: "failed",
    failureReason: reason,
    failureKind: kind,
  });
  await onRenewalPaymentFailed(ctx, payment, kind);
  return true;
}

/** A checkout whose TrueLayer call failed: the payment is `failed`, never left `pending`. */
export async function failCheckout(
  ctx: MutationCtx,
  paymentId: Id<"payments">,
  reason: string,
): Promise<void> {
  const payment = await ctx.db.get("payments", paymentId);
  if (payment !== null) {
    await failPayment(ctx, payment, reason, "provider");
  }
}

// ---------------------------------------------------------------------------------------------
// Payment outcomes

/**
 * Marks the payment succeeded; credits what it bought at checkout (`creditsPurchased`, a `purchase`
 * ledger row linked to the payment) and moves the user to its plan only on the first success,
 * so repeated or reordered executed/settled events credit exactly once.
 */
export async function markPaymentSucceeded(
  ctx: MutationCtx,
  payment: Doc<"payments">,
  status: "executed" | "settled",
  occurredAt: number | undefined,
): Promise<WebhookOutcome> {
  if (isSucceeded(payment)) {
    if (status === "settled" && payment.status === "executed") {
      await ctx.db.patch("payments", payment._id, { status: "settled" });
      return applied("Payment settled (credited earlier).");
    }
    return ignored(`Payment already ${payment.status}; credited once already.`);
  }
  if (payment.status === "failed") {
    // TrueLayer does not succeed a failed payment, but if money arrived it must be credited.
    console.warn(`Payment ${payment._id} succeeded after being marked failed; crediting it.`);
  }
  await ctx.db.patch("payments", payment._id, {
    status,
    creditsAdded: payment.creditsPurchased,
    succeededAt: occurredAt ?? Date.now(),
    failureReason: undefined,
  });
  if (payment.subscriptionId !== undefined) {
    const applied_ = await applySubscriptionPayment(ctx, {
      ...payment,
      status,
      creditsAdded: payment.creditsPurchased,
    });
    return applied(
      `Payment ${status}: ${applied_.payment.creditsAdded} credits, ${applied_.message}.`,
    );
  }
  // A payment from before subscriptions: a lot of its own, keyed by the payment (replays grant
  // nothing), expiring one calendar month after the credits arrive.
  await grantPurchaseLot(
    ctx,
    { ...payment, creditsAdded: payment.creditsPurchased },
    `Purchase of the ${payment.planName} plan`,
  );
  await changePlan(ctx, payment.userId, payment.planName);
  return applied(`Payment ${status}: ${payment.creditsPurchased} credits added.`);
}

/** Marks a pending payment failed with the reason; a failure after success changes nothing. */
export async function markPaymentFailed(
  ctx: MutationCtx,
  payment: Doc<"payments">,
  reason: string,
): Promise<WebhookOutcome> {
  if (isSucceeded(payment)) {
    return ignored(`payment_failed after the payment was ${payment.status}: ignored.`);
  }
  if (!(await failPayment(ctx, payment, reason, "payment"))) {
    return ignored("Payment already failed.");
  }
  return applied(`Payment failed: ${reason}.`);
}

// ---------------------------------------------------------------------------------------------
// Webhook dispatch

type EventPaymentIds = Pick<TrueLayerEvent, "trueLayerPaymentId" | "cineweavePaymentId">;

/**
 * Our payment for a TrueLayer event: by TrueLayer's payment id, or (when the webhook beat the
 * checkout action to storing that id) by the payment id we sent in the payment's metadata, if
 * that payment has no TrueLayer id yet (`unlinked`).
 */
export async function lookUpPayment(
  ctx: QueryCtx,
  event: EventPaymentIds,
): Promise<{ payment: Doc<"payments">; unlinked: boolean } | null> {
  const byTxn = await ctx.db
    .query("payments")
    .withIndex("by_trueLayerTxnId", (q) => q.eq("trueLayerTxnId", event.trueLayerPaymentId))
    .first();
  if (byTxn !== null) {
    return { payment: byTxn, unlinked: false };
  }
  const ours =
    event.cineweavePaymentId === undefined
      ? null
      : ctx.db.normalizeId("payments", event.cineweavePaymentId);
  const payment = ours === null ? null : await ctx.db.get("payments", ours);
  return payment === null || payment.trueLayerTxnId !== "" ? null : { payment, unlinked: true };
}

/** `lookUpPayment`, storing TrueLayer's id on a payment found by ours. */
export async function findPaymentForEvent(
  ctx: MutationCtx,
  event: EventPaymentIds,
): Promise<Doc<"payments"> | null> {
  const found = await lookUpPayment(ctx, event);
  if (found === null || !found.unlinked) {
    return found?.payment ?? null;
  }
  await ctx.db.patch("payments", found.payment._id, { trueLayerTxnId: event.trueLayerPaymentId });
  return { ...found.payment, trueLayerTxnId: event.trueLayerPaymentId };
}

/**
 * Applies one verified TrueLayer webhook event: a replayed event id changes nothing; an unknown
 * payment writes nothing (not even the event id, so a later delivery can still apply); otherwise
 * the event id is recorded together with the event's effect.
 */
export async function applyTrueLayerEvent(
  ctx: MutationCtx,
  event: TrueLayerEvent,
): Promise<WebhookOutcome> {
  if (event.trueLayerPaymentId === "") {
    return { outcome: "unknown_payment", message: "Empty payment id." };
  }
  if (await isWebhookEventRecorded(ctx, "truelayer", event.eventId)) {
    return { outcome: "duplicate", message: `Event ${event.eventId} was already processed.` };
  }
  const payment = await findPaymentForEvent(ctx, event);
  if (payment === null) {
    return {
      outcome: "unknown_payment",
      message: `No payment for TrueLayer payment ${event.trueLayerPaymentId}.`,
    };
  }
  await recordWebhookEvent(ctx, "truelayer", event.eventId, event.type);
  switch (event.type) {
    case "payment_executed":
      return await markPaymentSucceeded(ctx, payment, "executed", event.occurredAt);
    case "payment_settled":
      return await markPaymentSucceeded(ctx, payment, "settled", event.occurredAt);
    case "payment_failed":
      return await markPaymentFailed(ctx, payment, event.failureReason ?? "unknown");
    case "refund_executed":
    case "refund_failed":
      return await applyRefundEvent(ctx, payment, {
        type: event.type,
        trueLayerRefundId: event.refundId!,
        amountInMinor: event.amountInMinor,
        failureReason: event.failureReason,
        occurredAt: event.occurredAt,
      });
  }
}
