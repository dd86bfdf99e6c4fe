import { paginationOptsValidator, paginationResultValidator } from "convex/server";
import { v, type Infer } from "convex/values";
import { doc, literals } from "convex-helpers/validators";
import schema from "./schema";
import { internal } from "./_generated/api";
import {
  action,
  internalAction,
  internalMutation,
  internalQuery,
  query,
} from "./_generated/server";
import { getCallerUser, requireIdentity } from "./lib/auth";
import { appError } from "./lib/errors";
import { emptyPage, pageOptions, paginateChecked } from "./lib/pagination";
import { assertPlanName } from "./model/plans";
import {
  HANDLED_TRUELAYER_EVENTS,
  hostedPaymentPageUrl,
  readTrueLayerConfig,
} from "./lib/truelayer";
import { paymentStatusValidator, planNameValidator } from "./lib/validators";
import * as Payments from "./model/payments";

const paymentDoc = doc(schema, "payments");

/** What the caller sees of a payment (operators' follow-up fields stay internal). */
const paymentView = v.object({
  _id: v.id("payments"),
  _creationTime: v.number(),
  planName: planNameValidator,
  /** Minor units of `currency`. */
  amount: v.number(),
  currency: v.string(),
  status: paymentStatusValidator,
  creditsAdded: v.number(),
  timestamp: v.number(),
  failureReason: v.optional(v.string()),
  succeededAt: v.optional(v.number()),
  refundStatus: v.optional(literals("pending", "executed", "failed")),
  creditsReclaimed: v.optional(v.number()),
});

const webhookOutcomeValidator = v.object({
  outcome: literals("applied", "duplicate", "ignored", "unknown_payment"),
  message: v.string(),
});

const checkoutResultValidator = v.object({
  paymentId: v.id("payments"),
  planName: planNameValidator,
  amount: v.number(),
  currency: v.string(),
  environment: literals("sandbox", "production"),
  /** TrueLayer's payment id and resource token: what the hosted/embedded payment page needs. */
  trueLayerPaymentId: v.string(),
  resourceToken: v.string(),
  /** Ready-made hosted payment page link when TRUELAYER_RETURN_URI is set, else null. */
  hostedPaymentPageUrl: v.union(v.string(), v.null()),
});

const startedCheckoutValidator = v.object({
  paymentId: v.id("payments"),
  amount: v.number(),
  currency: v.string(),
  planName: planNameValidator,
  email: v.string(),
});

const startedRefundValidator = v.object({
  trueLayerPaymentId: v.string(),
  amount: v.number(),
  currency: v.string(),
});

// ---------------------------------------------------------------------------------------------
// Public

/**
 * Starts buying `planName` for the signed-in user: records a `pending` payment for the plan's
 * price, creates the payment with TrueLayer (Payments API v3, signed, idempotent) and returns
 * what the front end needs to open TrueLayer's payment page. Credits arrive later, with the
 * `payment_executed`/`payment_settled` webhook. If TrueLayer refuses or cannot be reached, the
 * payment is left `failed` and the call throws INVALID_TRANSITION.
 */
export const createCheckout = action({
  args: { planName: v.string() },
  returns: checkoutResultValidator,
  handler: async (ctx, { planName }): Promise<Infer<typeof checkoutResultValidator>> => {
    const identity = await requireIdentity(ctx);
    assertPlanName(planName);
    // A missing variable is a clear error before anything is written.
    const config = readTrueLayerConfig();
    const started: Infer<typeof startedCheckoutValidator> = await ctx.runMutation(
      internal.payments.startCheckout,
      {
        clerkId: identity.subject,
        planName,
        currency: config.currency,
      },
    );
    let created:
      | { ok: true; trueLayerPaymentId: string; resourceToken: string }
      | { ok: false; reason: string };
    try {
      created = await ctx.runAction(internal.truelayer.createPayment, {
        paymentId: started.paymentId,
        planName: started.planName,
        amountInMinor: started.amount,
        currency: started.currency,
        userName: identity.name ?? started.email,
        userEmail: started.email,
        idempotencyKey: crypto.randomUUID(),
      });
    } catch (error) {
      created = { ok: false, reason: error instanceof Error ? error.message : String(error) };
    }
    if (!created.ok) {
      await ctx.runMutation(internal.payments.failCheckout, {
        paymentId: started.paymentId,
        reason: created.reason,
      });
      throw appError(
        "INVALID_TRANSITION",
        `TrueLayer could not create the payment (${created.reason}). Nothing was charged; try again.`,
      );
    }
    await ctx.runMutation(internal.payments.attachTrueLayerPayment, {
      paymentId: started.paymentId,
      trueLayerPaymentId: created.trueLayerPaymentId,
    });
    return {
      paymentId: started.paymentId,
      planName: started.planName,
      amount: started.amount,
      currency: started.currency,
      environment: config.environment,
      trueLayerPaymentId: created.trueLayerPaymentId,
      resourceToken: created.resourceToken,
      hostedPaymentPageUrl: hostedPaymentPageUrl(
        config,
        created.trueLayerPaymentId,
        created.resourceToken,
      ),
    };
  },
});

/** The caller's payments, newest first (empty before `users:getOrCreateUser`). */
export const listPayments = query({
  args: { paginationOpts: paginationOptsValidator },
  returns: paginationResultValidator(paymentView),
  handler: async (ctx, { paginationOpts }) => {
    const user = await getCallerUser(ctx);
    const page = pageOptions(paginationOpts);
    if (user === null) {
      return emptyPage<never>();
    }
    const result = await paginateChecked(
      ctx.db
        .query("payments")
        .withIndex("by_userId", (q) => q.eq("userId", user._id))
        .order("desc"),
      page,
    );
    return {
      ...result,
      page: result.page.map((p) => ({
        _id: p._id,
        _creationTime: p._creationTime,
        planName: p.planName,
        amount: p.amount,
        currency: p.currency,
        status: p.status,
        creditsAdded: p.creditsAdded,
        timestamp: p.timestamp,
        failureReason: p.failureReason,
        succeededAt: p.succeededAt,
        refundStatus: p.refundStatus,
        creditsReclaimed: p.creditsReclaimed,
      })),
    };
  },
});

// ---------------------------------------------------------------------------------------------
// Operators

/**
 * Refunds a credited plan payment in full through TrueLayer's refunds API (signed like the
 * checkout). Credits are taken back when the `refund_executed` webhook arrives.
 * `npx convex run payments:refundPayment '{"paymentId":"..."}'`
 */
export const refundPayment = internalAction({
  args: { paymentId: v.id("payments") },
  returns: v.object({ refundId: v.string() }),
  handler: async (ctx, { paymentId }): Promise<{ refundId: string }> => {
    readTrueLayerConfig();
    const started: Infer<typeof startedRefundValidator> = await ctx.runMutation(
      internal.payments.startRefund,
      { paymentId },
    );
    let created: { ok: true; refundId: string } | { ok: false; reason: string };
    try {
      created = await ctx.runAction(internal.truelayer.createRefund, {
        trueLayerPaymentId: started.trueLayerPaymentId,
        amountInMinor: started.amount,
        idempotencyKey: crypto.randomUUID(),
      });
    } catch (error) {
      created = { ok: false, reason: error instanceof Error ? error.message : String(error) };
    }
    if (!created.ok) {
      await ctx.runMutation(internal.payments.failRefundStart, {
        paymentId,
        reason: created.reason,
      });
      throw appError("INVALID_TRANSITION", `TrueLayer refused the refund: ${created.reason}.`);
    }
    await ctx.runMutation(internal.payments.attachRefund, {
      paymentId,
      refundId: created.refundId,
    });
    return { refundId: created.refundId };
  },
});

/** Refunded payments whose credits were already spent (outstanding > 0), largest first. */
export const listOutstandingRefunds = internalQuery({
  args: { paginationOpts: paginationOptsValidator },
  returns: paginationResultValidator(paymentDoc),
  handler: async (ctx, { paginationOpts }) =>
    await ctx.db
      .query("payments")
      .withIndex("by_outstandingCredits", (q) => q.gt("outstandingCredits", 0))
      .order("desc")
      .paginate(paginationOpts),
});

/** One payment by id, for operators. */
export const getPayment = internalQuery({
  args: { paymentId: v.id("payments") },
  returns: v.union(paymentDoc, v.null()),
  handler: async (ctx, { paymentId }) => await ctx.db.get("payments", paymentId),
});

// ---------------------------------------------------------------------------------------------
// Internal steps of the checkout, the refund and the webhook

export const startCheckout = internalMutation({
  args: { clerkId: v.string(), planName: v.string(), currency: v.string() },
  returns: startedCheckoutValidator,
  handler: async (ctx, { clerkId, planName, currency }) =>
    await Payments.startCheckout(ctx, clerkId, planName, currency),
});

export const attachTrueLayerPayment = internalMutation({
  args: { paymentId: v.id("payments"), trueLayerPaymentId: v.string() },
  returns: v.null(),
  handler: async (ctx, { paymentId, trueLayerPaymentId }) => {
    await Payments.attachTrueLayerPayment(ctx, paymentId, trueLayerPaymentId);
    return null;
  },
});

export const failCheckout = internalMutation({
  args: { paymentId: v.id("payments"), reason: v.string() },
  returns: v.null(),
  handler: async (ctx, { paymentId, reason }) => {
    await Payments.failCheckout(ctx, paymentId, reason);
    return null;
  },
});

export const startRefund = internalMutation({
  args: { paymentId: v.id("payments") },
  returns: startedRefundValidator,
  handler: async (ctx, { paymentId }) => await Payments.startRefund(ctx, paymentId),
});

export const attachRefund = internalMutation({
  args: { paymentId: v.id("payments"), refundId: v.string() },
  returns: v.null(),
  handler: async (ctx, { paymentId, refundId }) => {
    await Payments.attachRefund(ctx, paymentId, refundId);
    return null;
  },
});

export const failRefundStart = internalMutation({
  args: { paymentId: v.id("payments"), reason: v.string() },
  returns: v.null(),
  handler: async (ctx, { paymentId, reason }) => {
    await Payments.failRefundStart(ctx, paymentId, reason);
    return null;
  },
});

/** Applies one verified TrueLayer webhook event exactly once (see model/payments.ts). */
export const applyTrueLayerEvent = internalMutation({
  args: {
    eventId: v.string(),
    type: literals(...HANDLED_TRUELAYER_EVENTS),
    trueLayerPaymentId: v.string(),
    cineweavePaymentId: v.optional(v.string()),
    refundId: v.optional(v.string()),
    failureReason: v.optional(v.string()),
    occurredAt: v.optional(v.number()),
  },
  returns: webhookOutcomeValidator,
  handler: async (ctx, event) => await Payments.applyTrueLayerEvent(ctx, event),
});
