import { vOnCompleteArgs } from "@convex-dev/workpool";
import { v, type Infer } from "convex/values";
import { doc, literals } from "convex-helpers/validators";
import schema from "./schema";
import { internal } from "./_generated/api";
import { internalAction, internalQuery } from "./_generated/server";
import { sweepMutation } from "./lib/sweeps";
import { appError } from "./lib/errors";
import {
  identityAction,
  internalMutation,
  maybeUserQuery,
  userMutation,
  userQuery,
} from "./lib/functions";
import { enforceRateLimit } from "./lib/rateLimits";
import { hostedPaymentPageUrl, readTrueLayerConfig, trueLayerCurrency } from "./lib/truelayer";
import { checkReturnUri, hostedMandatePageUrl, readMandateType } from "./lib/trueLayerMandates";
import { createTrueLayerMandate, createTrueLayerPayment } from "./lib/trueLayerFlow";
import { planNameValidator } from "./lib/validators";
import { assertPlanName } from "./model/plans";
import { mandateChargeKey } from "./model/mandateRenewals";
import * as Changes from "./model/subscriptionChanges";
import * as Periods from "./model/subscriptionPeriods";
import * as Quotes from "./model/subscriptionQuotes";
import * as Renewals from "./model/subscriptionRenewals";
import { currentSubscription } from "./model/subscriptionState";
import { latestMandate, mandateViewOf } from "./model/mandates";
import {
  mandateView,
  type reusableMandateValidator,
  type startedMandateValidator,
} from "./mandates";

/**
 * Subscriptions (rules in model/subscription*.ts, one file per stage: state, quotes, periods,
 * renewals, payments, changes). Start and upgrade go through `payments.createCheckout`;
 * everything else here.
 */

const subscriptionView = doc(schema, "subscriptions").omit("userId");
const mandateDoc = doc(schema, "mandates");

/**
 * The caller's subscription (the latest, whatever its status), or null; `mandate`: their newest
 * mandate (auto-renewal), whatever its status, or null.
 */
export const get = maybeUserQuery({
  args: {},
  returns: v.union(
    v.object({ ...subscriptionView.fields, mandate: v.union(mandateView, v.null()) }),
    v.null(),
  ),
  handler: async (ctx) => {
    if (ctx.user === null) return null;
    const sub = await currentSubscription(ctx, ctx.user._id);
    if (sub === null) return null;
    const { userId: _userId, ...view } = sub;
    return { ...view, mandate: mandateViewOf(await latestMandate(ctx, ctx.user._id)) };
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
    } = await Quotes.previewChange(ctx, ctx.user._id, planName);
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
    return await Changes.scheduleDowngrade(ctx, ctx.user, planName);
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
  handler: async (ctx) => await Changes.setCancelAtPeriodEnd(ctx, ctx.user, true),
});

/** Renews again (before the period ends). */
export const resume = userMutation({
  args: {},
  returns: cancelResult,
  handler: async (ctx) => await Changes.setCancelAtPeriodEnd(ctx, ctx.user, false),
});

// ---------------------------------------------------------------------------------------------
// Auto-renewal: a TrueLayer mandate (model/mandates.ts; internal steps in mandates.ts)

const autoRenewalSetUpValidator = v.object({
  mandateId: v.id("mandates"),
  ...mandateDoc.pick("type", "maxAmount", "periodicLimit", "currency").fields,
  environment: literals("sandbox", "production"),
  /** TrueLayer's mandate id and resource token: what the hosted/embedded page needs. */
  trueLayerMandateId: v.string(),
  resourceToken: v.string(),
  /** TrueLayer's hosted page for authorising it, when a return URI is known (else null). */
  hostedPaymentPageUrl: v.union(v.string(), v.null()),
});

/**
 * Sets up auto-renewal for the signed-in user: records a mandate of `TRUELAYER_MANDATE_TYPE`
 * (unset: UNAVAILABLE, the feature is off) allowing up to the dearest plan's monthly price per
 * payment, creates it with TrueLayer (signed, idempotent) and returns what the front end needs to
 * send the user to TrueLayer's page to authorise it; renewals are paid on it once the
 * `mandate_authorized` webhook arrives. `returnUri` (https) overrides `TRUELAYER_RETURN_URI`.
 *
 * Asked again while its page is valid (`MANDATE_REUSE_MS`), it returns the same mandate with no
 * TrueLayer call and no rate-limit token. CONFLICT while one is authorised; PAYMENT_PROVIDER_ERROR
 * (the mandate failed) if TrueLayer refuses or cannot be reached; RATE_LIMITED like checkouts.
 */
export const setUpAutoRenewal = identityAction({
  args: { returnUri: v.optional(v.string()) },
  returns: autoRenewalSetUpValidator,
  handler: async (ctx, { returnUri }): Promise<Infer<typeof autoRenewalSetUpValidator>> => {
    const { identity } = ctx;
    const asked = returnUri === undefined ? null : checkReturnUri(returnUri);
    const type = readMandateType();
    const config = readTrueLayerConfig();
    const back = asked ?? config.returnUri;
    const page = (trueLayerMandateId: string, resourceToken: string) => ({
      environment: config.environment,
      trueLayerMandateId,
      resourceToken,
      hostedPaymentPageUrl: hostedMandatePageUrl(config, back, trueLayerMandateId, resourceToken),
    });
    const reused: Infer<typeof reusableMandateValidator> = await ctx.runQuery(
      internal.mandates.reusableMandate,
      { clerkId: identity.subject, type, now: Date.now() },
    );
    if (reused !== null) {
      const { trueLayerMandateId, resourceToken, ...terms } = reused;
      return { ...terms, ...page(trueLayerMandateId, resourceToken) };
    }
    await enforceRateLimit(
      ctx,
      "setUpAutoRenewal",
      identity.subject,
      "Too many auto-renewal set-ups started in a short time; try again later.",
    );
    const started: Infer<typeof startedMandateValidator> = await ctx.runMutation(
      internal.mandates.startMandate,
      { clerkId: identity.subject, type, currency: config.currency },
    );
    const { email, ...terms } = started;
    const created = await createTrueLayerMandate(ctx, {
      ...terms,
      userName: identity.name ?? email,
      userEmail: email,
    });
    if (!created.ok) {
      await ctx.runMutation(internal.mandates.failMandateCreation, {
        mandateId: started.mandateId,
        reason: created.reason,
      });
      throw appError(
        "PAYMENT_PROVIDER_ERROR",
        `TrueLayer could not create the mandate (${created.reason}). Nothing was set up; try again.`,
      );
    }
    if (!created.attached) {
      throw appError("CONFLICT", "Another auto-renewal set-up replaced this one; use that one.");
    }
    return { ...terms, ...page(created.trueLayerMandateId, created.resourceToken) };
  },
});

/**
 * Stops auto-renewal: an authorised mandate is revoked with TrueLayer (then `revoked`; renewals
 * are paid on TrueLayer's page again), one not authorised yet simply ends. Idempotent: with
 * nothing left to revoke it changes nothing. Returns the caller's newest mandate as `get` shows
 * it. PAYMENT_PROVIDER_ERROR if TrueLayer refuses the revocation (the mandate stays authorised).
 */
export const cancelAutoRenewal = identityAction({
  args: {},
  returns: v.object({ mandate: v.union(mandateView, v.null()) }),
  handler: async (ctx): Promise<{ mandate: Infer<typeof mandateView> | null }> => {
    const clerkId = ctx.identity.subject;
    const toRevoke = await ctx.runMutation(internal.mandates.beginCancel, { clerkId });
    if (toRevoke !== null) {
      readTrueLayerConfig();
      const revoked = await ctx.runAction(internal.truelayer.revokeMandate, {
        trueLayerMandateId: toRevoke.trueLayerMandateId,
        type: toRevoke.type,
        idempotencyKey: `revoke-${toRevoke.trueLayerMandateId}`,
      });
      if (!revoked.ok) {
        throw appError(
          "PAYMENT_PROVIDER_ERROR",
          `TrueLayer could not revoke the mandate (${revoked.reason}); auto-renewal is still on. Try again.`,
        );
      }
      await ctx.runMutation(internal.mandates.markRevokedByClient, {
        mandateId: toRevoke.mandateId,
      });
    }
    const mandate: Infer<typeof mandateView> | null = await ctx.runQuery(
      internal.mandates.latestView,
      { clerkId },
    );
    return { mandate };
  },
});

// ---------------------------------------------------------------------------------------------
// Scheduled

/**
 * Scheduled when a renewal falls due (3 days before a period ends; again after a creation
 * TrueLayer refused), and run by the sweep: records the renewal payment if one is due now (keyed:
 * a stale or repeated run does nothing) and enqueues its `createRenewal` on the renewal creation
 * workpool.
 */
export const startRenewal = internalMutation({
  args: { subscriptionId: v.id("subscriptions"), periodEnd: v.number() },
  returns: v.union(v.id("payments"), v.null()),
  handler: async (ctx, { subscriptionId, periodEnd }) =>
    await Renewals.startRenewal(ctx, subscriptionId, periodEnd, Date.now()),
});

const renewalToCreateValidator = v.union(
  v.object({
    amount: v.number(),
    currency: v.string(),
    planName: planNameValidator,
    email: v.string(),
    /** Charged on this TrueLayer mandate (no user action), with this idempotency key. */
    mandate: v.optional(v.object({ trueLayerMandateId: v.string(), idempotencyKey: v.string() })),
  }),
  v.null(),
);

/** A recorded renewal payment still waiting for TrueLayer, with what its creation needs. */
export const renewalToCreate = internalQuery({
  args: { paymentId: v.id("payments") },
  returns: renewalToCreateValidator,
  handler: async (ctx, { paymentId }) => {
    const payment = await ctx.db.get("payments", paymentId);
    if (payment?.status !== "pending" || payment.trueLayerTxnId !== "") return null;
    const user = await ctx.db.get("users", payment.userId);
    const mandate = payment.mandateId && (await ctx.db.get("mandates", payment.mandateId));
    return {
      amount: payment.amount,
      currency: payment.currency,
      planName: payment.planName,
      email: user?.email ?? "",
      ...(payment.method === "mandate" && mandate?.trueLayerMandateId
        ? {
            mandate: {
              trueLayerMandateId: mandate.trueLayerMandateId,
              idempotencyKey: mandateChargeKey(payment),
            },
          }
        : {}),
    };
  },
});

/**
 * Creates a recorded renewal payment with TrueLayer: on the user's mandate (charged without
 * them), or for the hosted page (its link goes on the subscription). Run by the renewal creation workpool (lib/workpools.ts), keyed by the payment:
 * a run for a payment no longer waiting for TrueLayer does nothing. A failed call throws, so the
 * pool tries again with backoff (the same idempotency key: at most one TrueLayer payment);
 * `renewalCreationFinished` fails the renewal once every try failed.
 */
export const createRenewal = internalAction({
  args: { paymentId: v.id("payments") },
  returns: v.null(),
  handler: async (ctx, { paymentId }) => {
    const renewal: Infer<typeof renewalToCreateValidator> = await ctx.runQuery(
      internal.subscriptions.renewalToCreate,
      { paymentId },
    );
    if (renewal === null) return null;
    let config;
    try {
      config = readTrueLayerConfig();
    } catch {
      console.warn(`Renewal payment ${paymentId} not created: payments are not configured.`);
      await ctx.runMutation(internal.subscriptions.failRenewal, {
        paymentId,
        reason: "payments are not configured",
        retry: false,
      });
      return null;
    }
    const created = await createTrueLayerPayment(ctx, {
      paymentId,
      planName: renewal.planName,
      amountInMinor: renewal.amount,
      currency: renewal.currency,
      userName: renewal.email,
      userEmail: renewal.email,
      // On a mandate: one key per charge attempt (model/mandateRenewals.ts); on the page, our
      // payment's id. Either way a retried call never creates a second TrueLayer payment.
      idempotencyKey: renewal.mandate?.idempotencyKey ?? paymentId,
      mandateId: renewal.mandate?.trueLayerMandateId,
    });
    if (!created.ok) {
      throw new Error(`TrueLayer did not create renewal payment ${paymentId}: ${created.reason}`);
    }
    await ctx.runMutation(internal.subscriptions.attachRenewalUrl, {
      paymentId,
      // A charge on a mandate needs nothing from the user: no page.
      payUrl: renewal.mandate
        ? null
        : hostedPaymentPageUrl(config, created.trueLayerPaymentId, created.resourceToken),
    });
    return null;
  },
});

/**
 * The renewal creation workpool's word on a `createRenewal` that did not succeed (every try
 * failed, or it was canceled): the renewal fails and is due again after a backoff.
 */
export const renewalCreationFinished = internalMutation({
  args: vOnCompleteArgs(v.object({ paymentId: v.id("payments") })),
  returns: v.null(),
  handler: async (ctx, { context, result }) => {
    if (result.kind === "success") return null;
    const reason = result.kind === "failed" ? result.error : "the creation was canceled";
    await Renewals.renewalCreationFailed(ctx, context.paymentId, reason, true);
    return null;
  },
});

export const attachRenewalUrl = internalMutation({
  args: { paymentId: v.id("payments"), payUrl: v.union(v.string(), v.null()) },
  returns: v.null(),
  handler: async (ctx, { paymentId, payUrl }) => {
    await Renewals.attachRenewalUrl(ctx, paymentId, payUrl);
    return null;
  },
});

/** TrueLayer could not create the renewal payment: it fails; `retry`: due again after a backoff. */
export const failRenewal = internalMutation({
  args: { paymentId: v.id("payments"), reason: v.string(), retry: v.boolean() },
  returns: v.null(),
  handler: async (ctx, { paymentId, reason, retry }) => {
    await Renewals.renewalCreationFailed(ctx, paymentId, reason, retry);
    return null;
  },
});

/** Scheduled at each period end (keyed by it; a stale run changes nothing). */
export const closePeriod = internalMutation({
  args: { subscriptionId: v.id("subscriptions"), periodEnd: v.number() },
  returns: v.boolean(),
  handler: async (ctx, { subscriptionId, periodEnd }) =>
    await Periods.closePeriod(ctx, subscriptionId, periodEnd, Date.now()),
});

/** Scheduled at the end of a past_due subscription's grace (keyed by it). */
export const endGrace = internalMutation({
  args: { subscriptionId: v.id("subscriptions"), graceEndsAt: v.number() },
  returns: v.boolean(),
  handler: async (ctx, { subscriptionId, graceEndsAt }) =>
    await Periods.endGrace(ctx, subscriptionId, graceEndsAt, Date.now()),
});

/**
 * Cron (every 10 minutes): period ends and grace ends the scheduler missed. Bounded batches; it
 * schedules itself again while a backlog remains.
 */
export const sweepDue = sweepMutation({
  name: "subscriptions:sweepDue",
  returns: v.object({ handled: v.number(), more: v.boolean() }),
  batch: (ctx, now) => Periods.sweepDue(ctx, now),
});

/** A user's subscription, for operators. */
export const getForUser = internalQuery({
  args: { userId: v.id("users") },
  returns: v.union(doc(schema, "subscriptions"), v.null()),
  handler: async (ctx, { userId }) => await currentSubscription(ctx, userId),
});
