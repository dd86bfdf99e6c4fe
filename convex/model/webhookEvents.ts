import type { Doc } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";

// Webhook deliveries already processed, per provider, so a replayed event is recognised.

/**
 * How long a processed event id is remembered. Far longer than either provider redelivers
 * (Svix retries for about 3 days and its signatures go stale after 5 minutes; TrueLayer retries
 * for days): an older replay is refused by Svix, and for TrueLayer every event is idempotent by
 * the state it moves (a payment succeeds once, a refund row executes once), so forgetting the id
 * cannot credit twice.
 */
export const WEBHOOK_EVENT_RETENTION_MS = 30 * 24 * 60 * 60 * 1000;
export const WEBHOOK_EVENT_PRUNE_BATCH = 500;

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

/** One bounded batch of event ids older than the retention, deleted oldest first. */
export async function pruneWebhookEvents(
  ctx: MutationCtx,
  now: number,
): Promise<{ deleted: number; more: boolean }> {
  const old = await ctx.db
    .query("webhookEvents")
    .withIndex("by_receivedAt", (q) => q.lt("receivedAt", now - WEBHOOK_EVENT_RETENTION_MS))
    .take(WEBHOOK_EVENT_PRUNE_BATCH);
  for (const event of old) {
    await ctx.db.delete("webhookEvents", event._id);
  }
  return { deleted: old.length, more: old.length === WEBHOOK_EVENT_PRUNE_BATCH };
}
