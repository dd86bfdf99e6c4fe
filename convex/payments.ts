import { paginationOptsValidator, paginationResultValidator } from "convex/server";
import { v, type Infer } from "convex/values";
import { omit } from "convex-helpers";
import { doc, literals } from "convex-helpers/validators";
import schema from "./schema";
import { internal } from "./_generated/api";
import { internalAction, internalQuery } from "./_generated/server";
import { identityAction, internalMutation, maybeUserQuery } from "./lib/functions";
import { appError } from "./lib/errors";
import { pageOfUserRows } from "./lib/pagination";
import { enforceRateLimit } from "./lib/rateLimits";
import { createTrueLayerPayment, createTrueLayerRefund } from "./lib/trueLayerFlow";
import { assertPlanName } from "./model/plans";
import {
  hostedPaymentPageUrl,
  readTrueLayerConfig,
  trueLayerEventValidator,
} from "./lib/truelayer";
import { planNameValidator, webhookOutcomeValidator } from "./lib/validators";
import * as Payments from "./model/payments";
import * as Refunds from "./model/refunds";
import { MAX_REFUNDS_PER_PAYMENT } from "./model/refunds";

const paymentDoc = doc(schema, "payments");
const refundDoc = doc(schema, "refunds");

/** What the caller sees of a payment: operators' follow-up fields stay internal. */
const paymentView = paymentDoc.omit(...Payments.INTERNAL_PAYMENT_FIELDS);

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

const refundResultValidator = v.object({
  refundId: v.id("refunds"),
  trueLayerRefundId: v.string(),
  amount: v.number(),
});

const startedRefundValidator = v.object({
  refundId: v.id("refunds"),
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
 * payment is left `failed` and the call throws PAYMENT_PROVIDER_ERROR.
 *
 * Asked again for the same quote (same plan, purpose, amount, subscription period) while the
 * earlier checkout's page is valid (`CHECKOUT_REUSE_MS`), it returns that checkout — the same
 * payment, TrueLayer id and resource token — with no TrueLayer call and no rate-limit token.
 * Beyond that, new checkouts are limited per user (RATE_LIMITED, nothing written).
 */
export const createCheckout = identityAction({
  args: { planName: v.string() },
  returns: checkoutResultValidator,
  handler: async (ctx, { planName }): Promise<Infer<typeof checkoutResultValidator>> => {
    const { identity } = ctx;
    assertPlanName(planName);
    // A missing variable is a clear error before anything is written.
    const config = readTrueLayerConfig();
    const reused: Infer<typeof reusableCheckoutValidator> = await ctx.runQuery(
      internal.payments.reusableCheckout,
      { clerkId: identity.subject, planName, currency: config.currency, now: Date.now() },
    );
    if (reused !== null) {
      return {
        ...reused,
        environment: config.environment,
        hostedPaymentPageUrl: hostedPaymentPageUrl(
          config,
          reused.trueLayerPaymentId,
          reused.resourceToken,
        ),
      };
    }
    await enforceRateLimit(
      ctx,
      "createCheckout",
      identity.subject,
      "Too many checkouts started in a short time; try again later.",
    );
    const started: Infer<typeof startedCheckoutValidator> = await ctx.runMutation(
      internal.payments.startCheckout,
      {
        clerkId: identity.subject,
        planName,
        currency: config.currency,
      },
    );
    const created = await createTrueLayerPayment(ctx, {
      paymentId: started.paymentId,
      planName: started.planName,
      amountInMinor: started.amount,
      currency: started.currency,
      userName: identity.name ?? started.email,
      userEmail: started.email,
      idempotencyKey: crypto.randomUUID(),
    });
    if (!created.ok) {
      await ctx.runMutation(internal.payments.failCheckout, {
        paymentId: started.paymentId,
        reason: created.reason,
      });
      throw appError(
        "PAYMENT_PROVIDER_ERROR",
        `TrueLayer could not create the payment (${created.reason}). Nothing was charged; try again.`,
      );
    }
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
export const listPayments = maybeUserQuery({
  args: { paginationOpts: paginationOptsValidator },
  returns: paginationResultValidator(paymentView),
  handler: async (ctx, { paginationOpts }) => {
    const result = await pageOfUserRows(ctx, "payments", ctx.user, paginationOpts);
    return {
      ...result,
      page: result.page.map((payment) => omit(payment, [...Payments.INTERNAL_PAYMENT_FIELDS])),
    };
  },
});

// ---------------------------------------------------------------------------------------------
// Operators

/**
 * Refunds a credited plan payment through TrueLayer's refunds API (signed like the checkout):
 * `amount` minor units, by default all that is not refunded or being refunded yet. The refund is
 * recorded (`requested`) before TrueLayer is asked; credits are taken back, in proportion to the
 * amount, when its `refund_executed` webhook arrives (see model/refunds.ts).
 * `npx convex run payments:refundPayment '{"paymentId":"..."}'`
 */
export const refundPayment = internalAction({
  args: { paymentId: v.id("payments"), amount: v.optional(v.number()) },
  returns: refundResultValidator,
  handler: async (ctx, { paymentId, amount }): Promise<Infer<typeof refundResultValidator>> => {
    readTrueLayerConfig();
    const started: Infer<typeof startedRefundValidator> = await ctx.runMutation(
      internal.payments.startRefund,
      { paymentId, amount },
    );
    const created = await createTrueLayerRefund(ctx, {
      refundId: started.refundId,
      trueLayerPaymentId: started.trueLayerPaymentId,
      amountInMinor: started.amount,
    });
    if (!created.ok) {
      await ctx.runMutation(internal.payments.failRefundStart, {
        refundId: started.refundId,
        reason: created.reason,
      });
      throw appError("PAYMENT_PROVIDER_ERROR", `TrueLayer refused the refund: ${created.reason}.`);
    }
    return {
      refundId: started.refundId,
      trueLayerRefundId: created.refundId,
      amount: started.amount,
    };
  },
});

/** Executed refunds whose credits were consumed before they executed (outstanding), largest first. */
export const listOutstandingRefunds = internalQuery({
  args: { paginationOpts: paginationOptsValidator },
  returns: paginationResultValidator(refundDoc),
  handler: async (ctx, { paginationOpts }) =>
    await ctx.db
      .query("refunds")
      .withIndex("by_outstandingCredits", (q) => q.gt("outstandingCredits", 0))
      .order("desc")
      .paginate(paginationOpts),
});

/** A payment's refunds, oldest first, for operators. */
export const listRefunds = internalQuery({
  args: { paymentId: v.id("payments") },
  returns: v.array(refundDoc),
  handler: async (ctx, { paymentId }) =>
    await ctx.db
      .query("refunds")
      .withIndex("by_paymentId", (q) => q.eq("paymentId", paymentId))
      .take(MAX_REFUNDS_PER_PAYMENT * 5),
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

const reusableCheckoutValidator = v.union(
  v.object({
    paymentId: v.id("payments"),
    amount: v.number(),
    currency: v.string(),
    planName: planNameValidator,
    trueLayerPaymentId: v.string(),
    resourceToken: v.string(),
  }),
  v.null(),
);

/**
 * The caller's pending checkout for the quote a checkout of `planName` would record now, while
 * its payment page is valid (`now`: the calling action's clock; queries read none).
 */
export const reusableCheckout = internalQuery({
  args: { clerkId: v.string(), planName: v.string(), currency: v.string(), now: v.number() },
  returns: reusableCheckoutValidator,
  handler: async (ctx, { clerkId, planName, currency, now }) =>
    await Payments.findReusableCheckout(ctx, clerkId, planName, currency, now),
});

export const attachTrueLayerPayment = internalMutation({
  args: { paymentId: v.id("payments"), trueLayerPaymentId: v.string(), resourceToken: v.string() },
  returns: v.null(),
  handler: async (ctx, { paymentId, trueLayerPaymentId, resourceToken }) => {
    await Payments.attachTrueLayerPayment(ctx, paymentId, trueLayerPaymentId, resourceToken);
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
  args: { paymentId: v.id("payments"), amount: v.optional(v.number()) },
  returns: startedRefundValidator,
  handler: async (ctx, { paymentId, amount }) =>
    await Refunds.requestRefund(ctx, paymentId, amount),
});

export const attachRefund = internalMutation({
  args: { refundId: v.id("refunds"), trueLayerRefundId: v.string() },
  returns: v.null(),
  handler: async (ctx, { refundId, trueLayerRefundId }) => {
    await Refunds.attachTrueLayerRefund(ctx, refundId, trueLayerRefundId);
    return null;
  },
});

export const failRefundStart = internalMutation({
  args: { refundId: v.id("refunds"), reason: v.string() },
  returns: v.null(),
  handler: async (ctx, { refundId, reason }) => {
    await Refunds.failRefundRequest(ctx, refundId, reason);
    return null;
  },
});

/**
 * Whether the webhook must fetch a refund's amount from TrueLayer before applying its event:
 * only for a refund id we have never seen (made in TrueLayer Console) of a payment that is ours.
 */
export const refundNeedsAmount = internalQuery({
  args: {
    trueLayerPaymentId: v.string(),
    cineweavePaymentId: v.optional(v.string()),
    trueLayerRefundId: v.string(),
  },
  returns: v.boolean(),
  handler: async (ctx, { trueLayerPaymentId, cineweavePaymentId, trueLayerRefundId }) =>
    (await Refunds.findRefundByTrueLayerId(ctx, trueLayerRefundId)) === null &&
    (await Payments.lookUpPayment(ctx, { trueLayerPaymentId, cineweavePaymentId })) !== null,
});

/** Applies one verified TrueLayer webhook event exactly once (see model/payments.ts). */
export const applyTrueLayerEvent = internalMutation({
  args: trueLayerEventValidator,
  returns: webhookOutcomeValidator,
  handler: async (ctx, event) => await Payments.applyTrueLayerEvent(ctx, event),
});
