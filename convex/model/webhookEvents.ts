import type { Doc } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";

// Webhook deliveries already processed, per provider, so a replayed event is recognised.

/** True when this provider's event id was processed before. */
export async function isWebhookEventRecorded(
  ctx: QueryCtx,
  provider: Doc<"webhookEvents">["provider"],
  eventId: string,
): Promise<boolean> {
  const seen = await ctx.db
    .query("webhookEvents")
    .withIndex("by_provider_and_eventId", (q) => q.eq("provider", provider).eq("eventId", eventId))
    .first();
  return seen !== null;
}

/** Records a processed event id, in the same transaction as its effect. */
export async function recordWebhookEvent(
  ctx: MutationCtx,
  provider: Doc<"webhookEvents">["provider"],
  eventId: string,
  type: string,
): Promise<void> {
  await ctx.db.insert("webhookEvents", { provider, eventId, type, receivedAt: Date.now() });
}
