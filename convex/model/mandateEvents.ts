import type { MutationCtx } from "../_generated/server";
import type { MandateEvent } from "../lib/trueLayerMandates";
import type { WebhookOutcome } from "../lib/validators";
import {
  canTransition,
  revokeInBackground,
  transitionMandate,
  wasAbandoned,
  type Mandate,
  type MandateStatus,
} from "./mandates";
import { isWebhookEventRecorded, recordWebhookEvent } from "./webhookEvents";

/**
 * TrueLayer's mandate webhooks (`mandate_authorized`, `mandate_failed`, `mandate_revoked`),
 * applied through the mandate state machine of model/mandates.ts.
 */

/** Our mandate for an event: by TrueLayer's id, else by the id we sent in its metadata. */
async function findMandateForEvent(ctx: MutationCtx, event: MandateEvent): Promise<Mandate | null> {
  const byTrueLayerId = await ctx.db
    .query("mandates")
    .withIndex("by_trueLayerMandateId", (q) => q.eq("trueLayerMandateId", event.trueLayerMandateId))
    .first();
  if (byTrueLayerId !== null) return byTrueLayerId;
  const ours =
    event.cineweaveMandateId === undefined
      ? null
      : ctx.db.normalizeId("mandates", event.cineweaveMandateId);
  const mandate = ours === null ? null : await ctx.db.get("mandates", ours);
  if (mandate === null || mandate.trueLayerMandateId !== undefined) return null;
  await ctx.db.patch("mandates", mandate._id, { trueLayerMandateId: event.trueLayerMandateId });
  return { ...mandate, trueLayerMandateId: event.trueLayerMandateId };
}

const TARGET: Record<MandateEvent["type"], MandateStatus> = {
  mandate_authorized: "authorized",
  mandate_failed: "failed",
  mandate_revoked: "revoked",
};

/**
 * Applies one verified mandate webhook event: a replayed event id changes nothing; an unknown
 * mandate writes nothing (not even the event id); otherwise the event id is recorded with the
 * event's effect. A move the table does not allow (revoked after failed, a late authorisation of
 * a revoked mandate) is ignored; a mandate we had abandoned that was authorised after all is
 * revoked with TrueLayer, so no consent we will never use is left at the user's bank.
 */
export async function applyMandateEvent(
  ctx: MutationCtx,
  event: MandateEvent,
): Promise<WebhookOutcome> {
  if (await isWebhookEventRecorded(ctx, "truelayer", event.eventId)) {
    return { outcome: "duplicate", message: `Event ${event.eventId} was already processed.` };
  }
  const mandate = await findMandateForEvent(ctx, event);
  if (mandate === null) {
    return {
      outcome: "unknown_mandate",
      message: `No mandate for TrueLayer mandate ${event.trueLayerMandateId}.`,
    };
  }
  await recordWebhookEvent(ctx, "truelayer", event.eventId, event.type);
  const to = TARGET[event.type];
  if (mandate.status === to) {
    return { outcome: "ignored", message: `Mandate already ${to}.` };
  }
  if (!canTransition(mandate, to)) {
    if (to === "authorized" && mandate.status === "failed" && wasAbandoned(mandate)) {
      await revokeInBackground(ctx, { ...mandate, trueLayerMandateId: event.trueLayerMandateId });
      return {
        outcome: "ignored",
        message: "Mandate authorised after it was abandoned: revoking it with TrueLayer.",
      };
    }
    return { outcome: "ignored", message: `${event.type} after ${mandate.status}: ignored.` };
  }
  await transitionMandate(ctx, mandate, to, {
    ...(to === "authorized" ? { authorizedAt: event.occurredAt } : { endedAt: event.occurredAt }),
    ...(event.reason !== undefined ? { failureReason: event.reason } : {}),
  });
  return { outcome: "applied", message: `Mandate ${to}.` };
}
