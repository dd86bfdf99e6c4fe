import { v } from "convex/values";
import { doc } from "convex-helpers/validators";
import schema from "./schema";
import { internal } from "./_generated/api";
import { internalAction, internalQuery } from "./_generated/server";
import { internalMutation } from "./lib/functions";
import { mandateEventValidator } from "./lib/trueLayerMandates";
import { mandateTypeValidator, webhookOutcomeValidator } from "./lib/validators";
import * as Mandates from "./model/mandates";
import { requireActiveUserByClerkId } from "./model/users";

/**
 * TrueLayer mandates' internal steps (rules in model/mandates.ts; the public
 * `subscriptions.setUpAutoRenewal` and `subscriptions.cancelAutoRenewal` run them): recorded,
 * created with TrueLayer, attached or failed; revoked; moved by the signed webhook.
 */

const mandateDoc = doc(schema, "mandates");
const mandateTerms = mandateDoc.pick("type", "maxAmount", "periodicLimit", "currency");

/** What the front end sees of a user's mandate (`subscriptions.get`, `cancelAutoRenewal`). */
export const mandateView = mandateDoc.pick("status", "type", "maxAmount", "createdAt");

/** The caller's newest mandate as the front end sees it, or null. */
export const latestView = internalQuery({
  args: { clerkId: v.string() },
  returns: v.union(mandateView, v.null()),
  handler: async (ctx, { clerkId }) => {
    const user = await requireActiveUserByClerkId(ctx, clerkId);
    return Mandates.mandateViewOf(await Mandates.latestMandate(ctx, user._id));
  },
});

export const reusableMandateValidator = v.union(
  v.object({
    mandateId: v.id("mandates"),
    trueLayerMandateId: v.string(),
    resourceToken: v.string(),
    ...mandateTerms.fields,
  }),
  v.null(),
);

/** The caller's mandate awaiting authorisation, while its page is valid (`now`: the action's clock). */
export const reusableMandate = internalQuery({
  args: { clerkId: v.string(), type: mandateTypeValidator, now: v.number() },
  returns: reusableMandateValidator,
  handler: async (ctx, { clerkId, type, now }) =>
    await Mandates.findReusableMandate(ctx, clerkId, type, now),
});

export const startedMandateValidator = v.object({
  mandateId: v.id("mandates"),
  email: v.string(),
  ...mandateTerms.fields,
});

export const startMandate = internalMutation({
  args: { clerkId: v.string(), type: mandateTypeValidator, currency: v.string() },
  returns: startedMandateValidator,
  handler: async (ctx, { clerkId, type, currency }) =>
    await Mandates.startMandate(ctx, clerkId, type, currency),
});

/** False when the mandate ended meanwhile (a concurrent set-up replaced it). */
export const attachTrueLayerMandate = internalMutation({
  args: { mandateId: v.id("mandates"), trueLayerMandateId: v.string(), resourceToken: v.string() },
  returns: v.boolean(),
  handler: async (ctx, { mandateId, trueLayerMandateId, resourceToken }) =>
    await Mandates.attachTrueLayerMandate(ctx, mandateId, trueLayerMandateId, resourceToken),
});

export const failMandateCreation = internalMutation({
  args: { mandateId: v.id("mandates"), reason: v.string() },
  returns: v.null(),
  handler: async (ctx, { mandateId, reason }) => {
    await Mandates.failMandateCreation(ctx, mandateId, reason);
    return null;
  },
});

export const beginCancel = internalMutation({
  args: { clerkId: v.string() },
  returns: v.union(
    v.object({
      mandateId: v.id("mandates"),
      trueLayerMandateId: v.string(),
      type: mandateTypeValidator,
    }),
    v.null(),
  ),
  handler: async (ctx, { clerkId }) => await Mandates.beginCancel(ctx, clerkId),
});

export const markRevokedByClient = internalMutation({
  args: { mandateId: v.id("mandates") },
  returns: v.null(),
  handler: async (ctx, { mandateId }) => {
    await Mandates.markRevokedByClient(ctx, mandateId);
    return null;
  },
});

/** Applies one verified mandate webhook event exactly once (see model/mandates.ts). */
export const applyMandateEvent = internalMutation({
  args: mandateEventValidator,
  returns: webhookOutcomeValidator,
  handler: async (ctx, event) =>
    await Mandates.applyMandateEvent(ctx, event, async (mandate) => {
      await ctx.scheduler.runAfter(0, internal.mandates.revokeAbandoned, {
        trueLayerMandateId: event.trueLayerMandateId,
        type: mandate.type,
        attempt: 1,
      });
    }),
});

/** Tries of `revokeAbandoned`, an hour apart at most (TrueLayer retries the webhook for days). */
const ABANDONED_REVOKE_ATTEMPTS = 5;
const ABANDONED_REVOKE_BACKOFF_MS = [60_000, 10 * 60_000, 60 * 60_000, 60 * 60_000];

/**
 * A mandate we had ended (abandoned or canceled before authorisation) that the user authorised
 * after all: revoked with TrueLayer, so no consent we will never use is left at their bank. A
 * failed call is tried again after a backoff (same idempotency key), then logged for operators.
 */
export const revokeAbandoned = internalAction({
  args: { trueLayerMandateId: v.string(), type: mandateTypeValidator, attempt: v.number() },
  returns: v.null(),
  handler: async (ctx, { trueLayerMandateId, type, attempt }) => {
    const revoked = await ctx.runAction(internal.truelayer.revokeMandate, {
      trueLayerMandateId,
      type,
      idempotencyKey: `revoke-${trueLayerMandateId}`,
    });
    if (revoked.ok) return null;
    if (attempt >= ABANDONED_REVOKE_ATTEMPTS) {
      console.error(
        `Abandoned TrueLayer mandate ${trueLayerMandateId} could not be revoked: ${revoked.reason}; revoke it in Console.`,
      );
      return null;
    }
    console.warn(`Revoking abandoned mandate ${trueLayerMandateId} failed: ${revoked.reason}`);
    await ctx.scheduler.runAfter(
      ABANDONED_REVOKE_BACKOFF_MS[attempt - 1],
      internal.mandates.revokeAbandoned,
      { trueLayerMandateId, type, attempt: attempt + 1 },
    );
    return null;
  },
});

/** A user's mandates, newest first (at most 20), for operators. */
export const listForUser = internalQuery({
  args: { userId: v.id("users") },
  returns: v.array(mandateDoc),
  handler: async (ctx, { userId }) =>
    await ctx.db
      .query("mandates")
      .withIndex("by_userId", (q) => q.eq("userId", userId))
      .order("desc")
      .take(20),
});
