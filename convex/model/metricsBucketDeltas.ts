import type { MutationCtx, QueryCtx } from "../_generated/server";
import type { BucketDelta, HourStats } from "../lib/validators";
import {
  HOUR_MS,
  addHourStats,
  applyDelta,
  applyBucketDeltas,
  emptyHourStats,
} from "./metricsBuckets";
import { FOLD_BATCH, PENDING_READ_LIMIT, readPendingDeltas } from "./deferredCounters";

/**
 * The hourly buckets as deferred counters, like the subscription gauges (subscriptionTotals.ts).
 * A counted change (a job finishing, a payment's outcome, a lot expiring, a user active...) never
 * writes its bucket: the trigger inserts a `metricsBucketDeltas` row, and inserts never conflict,
 * so a cron drain of 10^5 period ends or lot expiries in one hour touches no common document. The
 * fold (`metrics:foldBucketDeltas`, every minute and again at once while a backlog remains) adds
 * the oldest FOLD_BATCH deltas to their buckets, each bucket read and written once, and deletes
 * them, in one transaction: buckets + unfolded deltas count every change in every snapshot.
 *
 * The hourly fold into day rows (metricsDays.ts) waits while an hour still has unfolded deltas;
 * `metrics.overview` adds the unfolded deltas of its window (up to PENDING_READ_LIMIT).
 */

export { FOLD_BATCH, PENDING_READ_LIMIT };

/**
 * The trigger's half: what one change adds to the (hour, shard) bucket, as a delta row. Reads
 * nothing. `create: false`: add only if the bucket exists (a user moving out of an hour).
 */
export async function recordBucketDelta(
  ctx: MutationCtx,
  hour: number,
  shard: number,
  delta: BucketDelta,
  create = true,
): Promise<void> {
  await ctx.db.insert("metricsBucketDeltas", {
    hour,
    shard,
    delta,
    ...(create ? {} : { create: false }),
  });
}

/**
 * One fold: the oldest FOLD_BATCH deltas added to their buckets (in the order they were
 * recorded) and deleted. A duplicate or concurrent run conflicts on the deltas it reads and,
 * retried, finds them gone.
 */
export async function foldBucketDeltasBatch(
  ctx: MutationCtx,
): Promise<{ folded: number; more: boolean }> {
  const deltas = await ctx.db.query("metricsBucketDeltas").take(FOLD_BATCH);
  const byBucket = new Map<string, typeof deltas>();
  for (const row of deltas) {
    const key = `${row.hour}:${row.shard}`;
    byBucket.set(key, [...(byBucket.get(key) ?? []), row]);
  }
  for (const rows of byBucket.values()) {
    await applyBucketDeltas(ctx, rows[0].hour, rows[0].shard, rows);
  }
  for (const row of deltas) await ctx.db.delete("metricsBucketDeltas", row._id);
  return { folded: deltas.length, more: deltas.length === FOLD_BATCH };
}

/** Whether `hour` still has deltas the fold has not added to its buckets (one index read). */
export async function hasUnfoldedDeltas(ctx: QueryCtx, hour: number): Promise<boolean> {
  const first = await ctx.db
    .query("metricsBucketDeltas")
    .withIndex("by_hour", (q) => q.eq("hour", hour))
    .first();
  return first !== null;
}

/** The newest hour any unfolded delta counts in (0 when none wait). */
export async function newestDeltaHour(ctx: QueryCtx): Promise<number> {
  const newest = await ctx.db
    .query("metricsBucketDeltas")
    .withIndex("by_hour")
    .order("desc")
    .first();
  return newest?.hour ?? 0;
}

/**
 * Adds the unfolded deltas of the hours [from, last] to `hours` (hour by hour, `hours[0]` the
 * hour `from`), oldest hour first, as `readPendingDeltas` limits them; says how many wait.
 */
export async function addPendingDeltas(
  ctx: QueryCtx,
  hours: HourStats[],
  from: number,
  last: number,
): Promise<{ pending: number; exact: boolean }> {
  const { rows, ...pending } = await readPendingDeltas(
    ctx.db
      .query("metricsBucketDeltas")
      .withIndex("by_hour", (q) => q.gte("hour", from).lte("hour", last)),
  );
  for (const row of rows) {
    // Not floored: a user moving out is taken from what the bucket or day row counts.
    const stats = emptyHourStats();
    Object.assign(stats, applyDelta(stats, row.delta, false));
    addHourStats(hours[Math.round((row.hour - from) / HOUR_MS)], stats);
  }
  return pending;
}
