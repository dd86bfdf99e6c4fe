import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { findUserByClerkId } from "../lib/auth";
import { appError } from "../lib/errors";
import type { TrueLayerEvent } from "../lib/truelayer";
import { applyCreditChange } from "./ledger";
import { requirePlan } from "./plans";
import { isWebhookEventRecorded, recordWebhookEvent } from "./webhookEvents";
import { recordPaymentOutcome } from "./metrics";
import { changePlan } from "./users";

/**
 * Payments and refunds. Every function here runs inside one mutation, so each status check and
 * the credit change it guards commit together: a payment is credited at most once and a
 * refund reclaimed at most once, whatever the number or order of webhook deliveries.
 */

export type WebhookOutcome = {
  /** applied: state changed; duplicate: event id seen before; ignored: nothing to do. */
  outcome: "applied" | "duplicate" | "ignored" | "unknown_payment";
  message: string;
};

const applied = (message: string): WebhookOutcome => ({ outcome: "applied", message });
const ignored = (message: string): WebhookOutcome => ({ outcome: "ignored", message });

export function isSucceeded(payment: Doc<"payments">): boolean {
  return payment.status === "executed" || payment.status === "settled";
}

// ---------------------------------------------------------------------------------------------
// Checkout

/** Records a `pending` payment for the plan's price; TrueLayer's id is attached once known. */
export async function startCheckout(
  ctx: MutationCtx,
  clerkId: string,
  planName: string,
  currency: string,
) {
  const user = await findUserByClerkId(ctx, clerkId);
  if (user === null) {
    throw appError("NOT_FOUND", "No user for this identity yet: call users:getOrCreateUser first.");
  }
  if (user.deletedAt !== undefined) {
    throw appError("FORBIDDEN", "This account has been deleted.");
  }
  const plan = await requirePlan(ctx, planName);
  const paymentId = await ctx.db.insert("payments", {
    userId: user._id,
    // Unknown until TrueLayer answers; webhooks never match an empty id.
    trueLayerTxnId: "",
    amount: plan.price,
    creditsAdded: 0,
    timestamp: Date.now(),
    status: "pending",
    planName: plan.name,
    currency,
  });
  return { paymentId, amount: plan.price, currency, planName: plan.name, email: user.email };
}

/** Stores TrueLayer's payment id on our pending payment. */
export async function attachTrueLayerPayment(
  ctx: MutationCtx,
  paymentId: Id<"payments">,
  trueLayerPaymentId: string,
): Promise<void> {
  const payment = await ctx.db.get("payments", paymentId);
  if (payment === null) {
    throw appError("NOT_FOUND", "Payment not found.");
  }
  if (payment.trueLayerTxnId === "") {
    await ctx.db.patch("payments", paymentId, { trueLayerTxnId: trueLayerPaymentId });
  } else if (payment.trueLayerTxnId !== trueLayerPaymentId) {
    throw appError("CONFLICT", "Payment is already linked to another TrueLayer payment.");
  }
}

/** A checkout whose TrueLayer call failed: the payment is `failed`, never left `pending`. */
export async function failCheckout(
  ctx: MutationCtx,
  paymentId: Id<"payments">,
  reason: string,
): Promise<void> {
  const payment = await ctx.db.get("payments", paymentId);
  if (payment?.status === "pending") {
    await ctx.db.patch("payments", paymentId, { status: "failed", failureReason: reason });
    await recordPaymentOutcome(ctx, { paymentId, succeeded: false });
  }
}

// ---------------------------------------------------------------------------------------------
// Payment outcomes

/**
 * Marks the payment succeeded; credits the plan's monthlyCredits (a `purchase` ledger row
 * linked to the payment) and moves the user to the plan only on the first success, so repeated
 * or reordered executed/settled events credit exactly once.
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
  const plan = await requirePlan(ctx, payment.planName);
  await ctx.db.patch("payments", payment._id, {
    status,
    creditsAdded: plan.monthlyCredits,
    succeededAt: occurredAt ?? Date.now(),
    failureReason: undefined,
  });
  await applyCreditChange(ctx, payment.userId, {
    delta: plan.monthlyCredits,
    kind: "purchase",
    paymentId: payment._id,
    note: `Purchase of the ${plan.name} plan`,
  });
  await changePlan(ctx, payment.userId, plan.name);
  await recordPaymentOutcome(ctx, { paymentId: payment._id, succeeded: true });
  return applied(`Payment ${status}: ${plan.monthlyCredits} credits added.`);
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
  if (payment.status === "failed") {
    return ignored("Payment already failed.");
  }
  await ctx.db.patch("payments", payment._id, { status: "failed", failureReason: reason });
  await recordPaymentOutcome(ctx, { paymentId: payment._id, succeeded: false });
  return applied(`Payment failed: ${reason}.`);
}

// ---------------------------------------------------------------------------------------------
// Refunds

/** Claims a succeeded payment for a refund (refundStatus `pending`) before TrueLayer is called. */
export async function startRefund(ctx: MutationCtx, paymentId: Id<"payments">) {
  const payment = await ctx.db.get("payments", paymentId);
  if (payment === null) {
    throw appError("NOT_FOUND", "Payment not found.");
  }
  if (!isSucceeded(payment) || payment.trueLayerTxnId === "") {
    throw appError(
      "INVALID_TRANSITION",
      `Only an executed or settled payment can be refunded (this one is ${payment.status}).`,
    );
  }
  if (payment.refundStatus === "pending" || payment.refundStatus === "executed") {
    throw appError(
      "INVALID_TRANSITION",
      `This payment's refund is already ${payment.refundStatus}.`,
    );
  }
  await ctx.db.patch("payments", paymentId, {
    refundStatus: "pending",
    refundId: undefined,
    refundFailureReason: undefined,
  });
  return {
    trueLayerPaymentId: payment.trueLayerTxnId,
    amount: payment.amount,
    currency: payment.currency,
  };
}

/** Stores TrueLayer's refund id (a webhook may have stored it first). */
export async function attachRefund(
  ctx: MutationCtx,
  paymentId: Id<"payments">,
  refundId: string,
): Promise<void> {
  const payment = await ctx.db.get("payments", paymentId);
  if (payment !== null && payment.refundId === undefined) {
    await ctx.db.patch("payments", paymentId, { refundId });
  }
}

/** The refund request itself failed: nothing was refunded, the payment can be refunded again. */
export async function failRefundStart(
  ctx: MutationCtx,
  paymentId: Id<"payments">,
  reason: string,
): Promise<void> {
  const payment = await ctx.db.get("payments", paymentId);
  if (payment?.refundStatus === "pending" && payment.refundId === undefined) {
    await ctx.db.patch("payments", paymentId, {
      refundStatus: "failed",
      refundFailureReason: reason,
    });
  }
}

/**
 * The refund executed: takes back the purchase's credits, as many as the balance allows (never
 * below zero), as one `refund` ledger row linked to the payment. What could not be taken back
 * (already spent) is recorded as `outstandingCredits` for operators. Applied once per payment.
 */
export async function applyRefundExecuted(
  ctx: MutationCtx,
  payment: Doc<"payments">,
  refundId: string,
): Promise<WebhookOutcome> {
  if (payment.refundId !== undefined && payment.refundId !== refundId) {
    return ignored(`refund_executed for refund ${refundId}, not this payment's current refund.`);
  }
  if (payment.refundStatus === "executed") {
    return ignored("Refund already applied.");
  }
  if (payment.refundStatus === "failed" && payment.refundId === refundId) {
    // Failed is final for a refund (an executed one can still fail, never the reverse), so a
    // late or reordered refund_executed for it must not take credits.
    return ignored(`refund_executed for refund ${refundId}, which already failed.`);
  }
  if (!isSucceeded(payment)) {
    return ignored(`refund_executed for a ${payment.status} payment: nothing was credited.`);
  }
  const user = await ctx.db.get("users", payment.userId);
  if (user === null) {
    throw appError("NOT_FOUND", "User not found.");
  }
  const reclaimed = Math.min(Math.max(user.credits, 0), payment.creditsAdded);
  const outstanding = payment.creditsAdded - reclaimed;
  await applyCreditChange(ctx, payment.userId, {
    delta: 0 - reclaimed, // not -0
    kind: "refund",
    paymentId: payment._id,
    note:
      outstanding > 0
        ? `Payment refunded: ${reclaimed} credits reclaimed, ${outstanding} already spent`
        : `Payment refunded: ${reclaimed} credits reclaimed`,
  });
  await ctx.db.patch("payments", payment._id, {
    refundId,
    refundStatus: "executed",
    refundFailureReason: undefined,
    creditsReclaimed: reclaimed,
    outstandingCredits: outstanding,
  });
  if (outstanding > 0) {
    console.warn(
      `Refund ${refundId} of payment ${payment._id}: ${outstanding} credits were already spent.`,
    );
  }
  return applied(`Refund executed: ${reclaimed} credits reclaimed, ${outstanding} outstanding.`);
}

/**
 * The refund failed. If it had executed (a bank can return an executed refund), the customer
 * kept no money back, so the reclaimed credits are given back (an `adjustment` row).
 */
export async function applyRefundFailed(
  ctx: MutationCtx,
  payment: Doc<"payments">,
  refundId: string,
  reason: string,
): Promise<WebhookOutcome> {
  if (payment.refundId !== undefined && payment.refundId !== refundId) {
    return ignored(`refund_failed for refund ${refundId}, not this payment's current refund.`);
  }
  if (payment.refundStatus === "failed") {
    return ignored("Refund already failed.");
  }
  if (payment.refundStatus === "executed") {
    const reclaimed = payment.creditsReclaimed ?? 0;
    await applyCreditChange(ctx, payment.userId, {
      delta: reclaimed,
      kind: "adjustment",
      paymentId: payment._id,
      note: `Refund ${refundId} returned by the bank: reclaimed credits given back`,
    });
  }
  await ctx.db.patch("payments", payment._id, {
    refundId,
    refundStatus: "failed",
    refundFailureReason: reason,
    creditsReclaimed: payment.refundStatus === "executed" ? 0 : payment.creditsReclaimed,
    outstandingCredits: payment.refundStatus === "executed" ? 0 : payment.outstandingCredits,
  });
  return applied(`Refund failed: ${reason}.`);
}

// ---------------------------------------------------------------------------------------------
// Webhook dispatch

/**
 * Our payment for a TrueLayer event: by TrueLayer's payment id, or (when the webhook beat the
 * checkout action to storing that id) by the payment id we sent in the payment's metadata.
 */
export async function findPaymentForEvent(
  ctx: MutationCtx,
  event: Pick<TrueLayerEvent, "trueLayerPaymentId" | "cineweavePaymentId">,
): Promise<Doc<"payments"> | null> {
  const byTxn = await ctx.db
    .query("payments")
    .withIndex("by_trueLayerTxnId", (q) => q.eq("trueLayerTxnId", event.trueLayerPaymentId))
    .first();
  if (byTxn !== null || event.cineweavePaymentId === undefined) {
    return byTxn;
  }
  const ours = ctx.db.normalizeId("payments", event.cineweavePaymentId);
  const payment = ours === null ? null : await ctx.db.get("payments", ours);
  if (payment === null || payment.trueLayerTxnId !== "") {
    return null;
  }
  await ctx.db.patch("payments", payment._id, { trueLayerTxnId: event.trueLayerPaymentId });
  return { ...payment, trueLayerTxnId: event.trueLayerPaymentId };
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
      return await applyRefundExecuted(ctx, payment, event.refundId!);
    case "refund_failed":
      return await applyRefundFailed(
        ctx,
        payment,
        event.refundId!,
        event.failureReason ?? "unknown",
      );
  }
}
