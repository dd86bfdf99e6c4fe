import { v, type Infer } from "convex/values";
import { doc } from "convex-helpers/validators";
import schema from "./schema";
import { internal } from "./_generated/api";
import { internalAction, internalQuery } from "./_generated/server";
import { internalMutation, maybeUserQuery, userMutation, userQuery } from "./lib/functions";
import { hostedPaymentPageUrl, readTrueLayerConfig, trueLayerCurrency } from "./lib/truelayer";
import { planNameValidator } from "./lib/validators";
import { assertPlanName } from "./model/plans";
import { failCheckout } from "./model/payments";
import * as Subscriptions from "./model/subscriptions";

/**
 * Subscriptions (rules in model/subscriptions.ts). Start and upgrade go through
 * `payments.createCheckout`; everything else here.
 */

const subscriptionView = doc(schema, "subscriptions").omit("userId");

/** The caller's subscription (the latest, whatever its status), or null. */
export const get = maybeUserQuery({
  args: {},
  returns: v.union(subscriptionView, v.null()),
  handler: async (ctx) => {
    if (ctx.user === null) return null;
    const sub = await Subscriptions.currentSubscription(ctx, ctx.user._id);
    if (sub === null) return null;
    const { userId: _userId, ...view } = sub;
    return view;
  },
});

const previewValidator = v.object({
  kind: v.union(
    v.literal("start"),
    v.literal("upgrade"),
    v.literal("downgrade"),
    v.literal("renewal"),
    v.literal("none"),
  ),
  planName: planNameValidator,
  /** Minor units of `currency` to pay now. */
  amount: v.number(),
  currency: v.string(),
  creditsGranted: v.number(),
  creditsConverted: v.number(),
  /** null: when the payment succeeds; else the period end the change waits for. */
  takesEffectAt: v.union(v.number(), v.null()),
});

/** What choosing `planName` would do now, for the front end to show before the user confirms. */
export const previewChange = userQuery({
  args: { planName: v.string() },
  returns: previewValidator,
  handler: async (ctx, { planName }): Promise<Infer<typeof previewValidator>> => {
    assertPlanName(planName);
    const {
      subscription: _sub,
      plan,
      ...preview
    } = await Subscriptions.previewChange(ctx, ctx.user._id, planName);
    return {
      ...preview,
      planName: plan.name,
      currency: trueLayerCurrency(),
    };
  },
});

/**
 * Schedules a change to a cheaper plan for the period end; the current plan clears a scheduled
 * change. A plan with more credits is refused: upgrade with `payments.createCheckout`.
 */
export const changePlan = userMutation({
  args: { planName: v.string() },
  returns: v.object({
    pendingPlan: v.union(planNameValidator, v.null()),
    takesEffectAt: v.union(v.number(), v.null()),
  }),
  handler: async (ctx, { planName }) => {
    assertPlanName(planName);
    return await Subscriptions.scheduleDowngrade(ctx, ctx.user, planName);
  },
});

const cancelResult = v.object({
  cancelAtPeriodEnd: v.boolean(),
  currentPeriodEnd: v.union(v.number(), v.null()),
  /** When the subscription ends (null: it renews): after the next period if that is paid. */
  endsAt: v.union(v.number(), v.null()),
});

/** Stops renewing: the subscription ends at the current period's end (or the paid next one's). */
export const cancel = userMutation({
  args: {},
  returns: cancelResult,
  handler: async (ctx) => await Subscriptions.setCancelAtPeriodEnd(ctx, ctx.user, true),
});

/** Renews again (before the period ends). */
export const resume = userMutation({
  args: {},
  returns: cancelResult,
  handler: async (ctx) => await Subscriptions.setCancelAtPeriodEnd(ctx, ctx.user, false),
});

// ---------------------------------------------------------------------------------------------
// Scheduled

/** Scheduled 3 days before a period ends: creates the renewal payment with TrueLayer. */
export const createRenewal = internalAction({
  args: { subscriptionId: v.id("subscriptions"), periodEnd: v.number() },
  returns: v.null(),
  handler: async (ctx, { subscriptionId, periodEnd }) => {
    let config;
    try {
      config = readTrueLayerConfig();
    } catch {
      console.warn(`Renewal of ${subscriptionId} not created: payments are not configured.`);
      config = null;
    }
    const started = await ctx.runMutation(internal.subscriptions.startRenewal, {
      subscriptionId,
      periodEnd,
      currency: config?.currency ?? "GBP",
    });
    if (started === null) return null;
    if (config === null) {
      await ctx.runMutation(internal.subscriptions.failRenewal, {
        paymentId: started.paymentId,
        reason: "payments are not configured",
      });
      return null;
    }
    const created = await ctx.runAction(internal.truelayer.createPayment, {
      paymentId: started.paymentId,
      planName: started.planName,
      amountInMinor: started.amount,
      currency: config.currency,
      userName: started.email,
      userEmail: started.email,
      idempotencyKey: started.paymentId,
    });
    if (!created.ok) {
      await ctx.runMutation(internal.subscriptions.failRenewal, {
        paymentId: started.paymentId,
        reason: created.reason,
      });
      return null;
    }
    await ctx.runMutation(internal.payments.attachTrueLayerPayment, {
      paymentId: started.paymentId,
      trueLayerPaymentId: created.trueLayerPaymentId,
    });
    await ctx.runMutation(internal.subscriptions.attachRenewalUrl, {
      paymentId: started.paymentId,
      payUrl: hostedPaymentPageUrl(config, created.trueLayerPaymentId, created.resourceToken),
    });
    return null;
  },
});

export const startRenewal = internalMutation({
  args: { subscriptionId: v.id("subscriptions"), periodEnd: v.number(), currency: v.string() },
  returns: v.union(
    v.object({
      paymentId: v.id("payments"),
      amount: v.number(),
      planName: planNameValidator,
      email: v.string(),
    }),
    v.null(),
  ),
  handler: async (ctx, { subscriptionId, periodEnd, currency }) =>
    await Subscriptions.startRenewal(ctx, subscriptionId, periodEnd, currency),
});

export const attachRenewalUrl = internalMutation({
  args: { paymentId: v.id("payments"), payUrl: v.union(v.string(), v.null()) },
  returns: v.null(),
  handler: async (ctx, { paymentId, payUrl }) => {
    await Subscriptions.attachRenewalUrl(ctx, paymentId, payUrl);
    return null;
  },
});

export const failRenewal = internalMutation({
  args: { paymentId: v.id("payments"), reason: v.string() },
  returns: v.null(),
  handler: async (ctx, { paymentId, reason }) => {
    // Like a checkout TrueLayer refused: pending → failed; the subscription shows it.
    await failCheckout(ctx, paymentId, reason);
    const payment = await ctx.db.get("payments", paymentId);
    if (payment !== null) {
      await Subscriptions.markRenewalFailed(ctx, payment);
    }
    return null;
  },
});

/** Scheduled at each period end (keyed by it; a stale run changes nothing). */
export const closePeriod = internalMutation({
  args: { subscriptionId: v.id("subscriptions"), periodEnd: v.number() },
  returns: v.boolean(),
  handler: async (ctx, { subscriptionId, periodEnd }) =>
    await Subscriptions.closePeriod(ctx, subscriptionId, periodEnd, Date.now()),
});

/** Scheduled at the end of a past_due subscription's grace (keyed by it). */
export const endGrace = internalMutation({
  args: { subscriptionId: v.id("subscriptions"), graceEndsAt: v.number() },
  returns: v.boolean(),
  handler: async (ctx, { subscriptionId, graceEndsAt }) =>
    await Subscriptions.endGrace(ctx, subscriptionId, graceEndsAt, Date.now()),
});

/**
 * Cron (every 10 minutes): period ends and grace ends the scheduler missed. Bounded batches; it
 * schedules itself again while a backlog remains.
 */
export const sweepDue = internalMutation({
  args: {},
  returns: v.object({ handled: v.number(), more: v.boolean() }),
  handler: async (ctx) => {
    const result = await Subscriptions.sweepDue(ctx, Date.now());
    if (result.more) {
      await ctx.scheduler.runAfter(0, internal.subscriptions.sweepDue, {});
    }
    return result;
  },
});

/** A user's subscription, for operators. */
export const getForUser = internalQuery({
  args: { userId: v.id("users") },
  returns: v.union(doc(schema, "subscriptions"), v.null()),
  handler: async (ctx, { userId }) => await Subscriptions.currentSubscription(ctx, userId),
});
