import type { Doc } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import type { HourStats, PlanName } from "../lib/validators";
import { DAY_MS, dayStart } from "./calendar";
import {
  HOUR_MS,
  METRIC_SHARDS,
  RETENTION_HOURS,
  addHourStats,
  emptyHourStats,
  hourStart,
} from "./metricsBuckets";
import { hasUnfoldedDeltas } from "./metricsBucketDeltas";

/**
 * Daily rollups: each complete hour's buckets, all shards added up, kept per hour in one
 * `metricsDays` row per UTC day. So a window reads about one row per day instead of
 * hours x METRIC_SHARDS buckets.
 *
 * Nothing that counts an event writes a day row: the hourly fold (`metrics:foldHours`) appends
 * each hour once it is over, in bounded batches, and marks that hour's buckets `folded`. Events
 * count at "now", so an hour that is over only changes when a user whose latest activity lay in
 * it becomes active again (metricsRollups.ts moves them out of it). The fold of that delta
 * (`applyBucketDeltas`) sees the bucket is folded and notes the change in the shard's `metricsFoldedActivity` row, sharded
 * like the buckets, so the fold leaves no day row that every change writes.
 *
 * `readWindow` gives a window hour by hour: folded hours from the day rows plus their later
 * activity changes, the rest (the current hour, and any the fold has not reached) from the
 * buckets. It returns what adding up the window's buckets returns (tests/metricsDays.test.ts
 * checks both ways on random data).
 */

/** An hour is folded this long after it ends: longer than any transaction that counts in it. */
export const FOLD_DELAY_MS = 2 * 60 * 1000;
/** Hours folded per transaction: 24 x METRIC_SHARDS bucket reads and `folded` marks. */
export const FOLD_BATCH_HOURS = 24;
/** Day rows deleted per prune transaction (each up to ~20 KB). */
export const PRUNE_DAYS_BATCH = 50;

function canFold(hour: number, now: number): boolean {
  return hour + HOUR_MS + FOLD_DELAY_MS <= now;
}

/** The next hour to fold: after the newest day row's last hour, or the oldest retained bucket's. */
async function nextHourToFold(
  ctx: QueryCtx,
  now: number,
): Promise<{ hour: number; newest: Doc<"metricsDays"> | null } | null> {
  const newest = await ctx.db.query("metricsDays").withIndex("by_day").order("desc").first();
  if (newest !== null) {
    return { hour: newest.day + newest.hours.length * HOUR_MS, newest };
  }
  const oldest = await ctx.db.query("metricsBuckets").withIndex("by_hour_and_shard").first();
  if (oldest === null) {
    return null;
  }
  const cutoff = hourStart(now) - RETENTION_HOURS * HOUR_MS;
  return { hour: dayStart(Math.max(oldest.hour, cutoff)), newest: null };
}

/**
 * Folds up to FOLD_BATCH_HOURS complete hours, oldest first, each exactly once: keyed by the
 * newest day row's length, so a duplicate or late run folds nothing twice. An hour whose delta
 * rows are not all in its buckets yet (metricsBucketDeltas.ts) waits for the next run. Says
 * whether more complete hours remain ready.
 */
export async function foldHoursBatch(
  ctx: MutationCtx,
  now: number,
): Promise<{ folded: number; more: boolean }> {
  const next = await nextHourToFold(ctx, now);
  if (next === null) {
    return { folded: 0, more: false };
  }
  let hour = next.hour;
  // The day rows this batch writes (at most two: the batch is at most a day long).
  const days = new Map<number, { row: Doc<"metricsDays"> | null; hours: HourStats[] }>();
  if (next.newest !== null && next.newest.hours.length < 24) {
    days.set(next.newest.day, { row: next.newest, hours: [...next.newest.hours] });
  }
  let folded = 0;
  const ready = async (at: number) => canFold(at, now) && !(await hasUnfoldedDeltas(ctx, at));
  while (folded < FOLD_BATCH_HOURS && (await ready(hour))) {
    const buckets = await ctx.db
      .query("metricsBuckets")
      .withIndex("by_hour_and_shard", (q) => q.eq("hour", hour))
      .take(METRIC_SHARDS * 4);
    const stats = emptyHourStats();
    for (const bucket of buckets) {
      addHourStats(stats, bucket);
      if (bucket.folded !== true) {
        await ctx.db.patch("metricsBuckets", bucket._id, { folded: true });
      }
    }
    const day = dayStart(hour);
    const entry = days.get(day) ?? { row: null, hours: [] };
    entry.hours.push(stats);
    days.set(day, entry);
    hour += HOUR_MS;
    folded += 1;
  }
  for (const [day, { row, hours }] of days) {
    if (row === null) {
      await ctx.db.insert("metricsDays", { day, hours });
    } else if (hours.length !== row.hours.length) {
      await ctx.db.patch("metricsDays", row._id, { hours });
    }
  }
  return { folded, more: folded === FOLD_BATCH_HOURS && (await ready(hour)) };
}

/**
 * Drops what the retention no longer covers: day rows whose every hour is older than `cutoff`
 * (at most PRUNE_DAYS_BATCH), the hours before it in the day it falls in, and the folded
 * activity changes of those hours. Says whether more may remain.
 */
export async function pruneFoldedBatch(
  ctx: MutationCtx,
  cutoff: number,
): Promise<{ deleted: number; more: boolean }> {
  const old = await ctx.db
    .query("metricsDays")
    .withIndex("by_day", (q) => q.lte("day", cutoff - DAY_MS))
    .take(PRUNE_DAYS_BATCH);
  for (const row of old) {
    await ctx.db.delete("metricsDays", row._id);
  }
  if (old.length === PRUNE_DAYS_BATCH) {
    return { deleted: old.length, more: true };
  }
  const straddling = await ctx.db
    .query("metricsDays")
    .withIndex("by_day", (q) => q.eq("day", dayStart(cutoff)))
    .unique();
  if (straddling !== null) {
    const gone = (cutoff - straddling.day) / HOUR_MS;
    const hours = straddling.hours.map((stats, i) => (i < gone ? emptyHourStats() : stats));
    if (JSON.stringify(hours) !== JSON.stringify(straddling.hours)) {
      await ctx.db.patch("metricsDays", straddling._id, { hours });
    }
  }
  const activity = await ctx.db
    .query("metricsFoldedActivity")
    .withIndex("by_shard")
    .take(METRIC_SHARDS * 4);
  for (const row of activity) {
    const hours = row.hours.filter((entry) => entry.hour >= cutoff);
    if (hours.length !== row.hours.length) {
      await ctx.db.patch("metricsFoldedActivity", row._id, { hours });
    }
  }
  return { deleted: old.length, more: false };
}

/**
 * The window [from, last] (hour starts), hour by hour, each entry all shards added up: folded
 * hours from the day rows (plus their activity changes since), the rest from the buckets.
 * `source: "buckets"` adds up the buckets alone (what the overview read before the day rows;
 * the tests compare the two).
 */
export async function readWindow(
  ctx: QueryCtx,
  from: number,
  last: number,
  source: "rollups" | "buckets" = "rollups",
): Promise<HourStats[]> {
  const count = (last - from) / HOUR_MS + 1;
  const hours = Array.from({ length: count }, () => emptyHourStats());
  const covered = new Array<boolean>(count).fill(false);
  const index = (hour: number) => Math.round((hour - from) / HOUR_MS);
  if (source === "rollups") {
    const days = await ctx.db
      .query("metricsDays")
      .withIndex("by_day", (q) => q.gte("day", dayStart(from)).lte("day", last))
      .take(Math.ceil(count / 24) + 1);
    for (const row of days) {
      row.hours.forEach((stats, i) => {
        const at = index(row.day + i * HOUR_MS);
        if (at >= 0 && at < count) {
          addHourStats(hours[at], stats);
          covered[at] = true;
        }
      });
    }
    const activity = await ctx.db
      .query("metricsFoldedActivity")
      .withIndex("by_shard")
      .take(METRIC_SHARDS * 4);
    for (const row of activity) {
      for (const entry of row.hours) {
        const at = index(entry.hour);
        if (at >= 0 && at < count && covered[at]) {
          for (const plan of Object.keys(hours[at].activeUsers) as PlanName[]) {
            hours[at].activeUsers[plan] += entry[plan];
          }
        }
      }
    }
  }
  // The hours no day row covers, as runs of consecutive hours: one index range each.
  for (let start = 0; start < count;) {
    if (covered[start]) {
      start += 1;
      continue;
    }
    let end = start;
    while (end + 1 < count && !covered[end + 1]) end += 1;
    const buckets = await ctx.db
      .query("metricsBuckets")
      .withIndex("by_hour_and_shard", (q) =>
        q.gte("hour", from + start * HOUR_MS).lte("hour", from + end * HOUR_MS),
      )
      .take((end - start + 1) * METRIC_SHARDS);
    for (const bucket of buckets) {
      addHourStats(hours[index(bucket.hour)], bucket);
    }
    start = end + 1;
  }
  return hours;
}
