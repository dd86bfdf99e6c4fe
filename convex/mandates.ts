import { v } from "convex/values";
import { doc } from "convex-helpers/validators";
import schema from "./schema";
import { internal } from "./_generated/api";
import { internalAction, internalQuery } from "./_generated/server";
import { internalMutation } from "./lib/functions";
import { mandateEventValidator } from "./lib/trueLayerMandates";
import { mandateTypeValidator, webhookOutcomeValidator } from "./lib/validators";
import * as Mandates from "./model/mandates";
import { applyMandateEvent as applyEvent } from "./model/mandateEvents";
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
  handler: async (ctx, event) => await applyEvent(ctx, event),
});

/** Tries of `revokeInBackground`, 1 minute to 1 hour apart (TrueLayer retries webhooks for days). */
const BACKGROUND_REVOKE_BACKOFF_MS = [60_000, 10 * 60_000, 60 * 60_000, 60 * 60_000];

/**
 * Revokes a mandate with TrueLayer with nobody waiting on the answer: one we had abandoned that
 * the user authorised after all, or a deleted account's. Once TrueLayer accepts, a mandate still
 * authorised here is `revoked`. A failed call is tried again after a backoff (the same
 * idempotency key), at most 5 times, then logged for an operator (revoke it in Console).
 */
export const revokeInBackground = internalAction({
  args: {
    mandateId: v.id("mandates"),
    trueLayerMandateId: v.string(),
    type: mandateTypeValidator,
    attempt: v.number(),
  },
  returns: v.null(),
  handler: async (ctx, args) => {
    const { mandateId, trueLayerMandateId, type, attempt } = args;
    const revoked = await ctx.runAction(internal.truelayer.revokeMandate, {
      trueLayerMandateId,
      type,
      idempotencyKey: `revoke-${trueLayerMandateId}`,
    });
    if (revoked.ok) {
      await ctx.runMutation(internal.mandates.markRevokedByClient, { mandateId });
      return null;
    }
    if (attempt > BACKGROUND_REVOKE_BACKOFF_MS.length) {
      console.error(
        `TrueLayer mandate ${trueLayerMandateId} could not be revoked: ${revoked.reason}; revoke it in Console.`,
      );
      return null;
    }
    console.warn(`Revoking TrueLayer mandate ${trueLayerMandateId} failed: ${revoked.reason}`);
    await ctx.scheduler.runAfter(
      BACKGROUND_REVOKE_BACKOFF_MS[attempt - 1],
      internal.mandates.revokeInBackground,
      { ...args, attempt: attempt + 1 },
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
