import type { Doc } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import type {
  BucketDelta,
  DurationStats,
  HourStats,
  PlanCounts,
  PlanName,
} from "../lib/validators";

/**
 * Storage of the monitoring rollups: `metricsBuckets` rows keyed by (UTC hour, shard), the only
 * code that writes them (`applyBucketDeltas`, `pruneBucketsBatch`). metricsRollups.ts decides
 * what each change adds; metricsOverview.ts reads a window.
 *
 * A counted change does not write its bucket: it inserts a delta row, and the fold of the delta
 * rows (metricsBucketDeltas.ts, every minute) adds a batch of them into the buckets, each bucket
 * written once per batch. So a cron drain of 10^5 changes in one hour writes no common document.
 * The shard (a hash of the job, user or payment id) keeps each row's activity small. Once an
 * hour is over, the hourly fold adds its buckets up into one `metricsDays` row per day
 * (metricsDays.ts), which is what `metrics.overview` reads for it; buckets are read only for
 * hours not folded yet (the current one).
 */

export const HOUR_MS = 60 * 60 * 1000;
/** Rows per hour. A small fixed number: changing it only affects hours written afterwards. */
export const METRIC_SHARDS = 8;
export const DEFAULT_WINDOW_HOURS = 24;
export const MAX_WINDOW_HOURS = 720;
/** Buckets and day rows older than this are deleted by the `metrics:pruneOldBuckets` cron. */
export const RETENTION_HOURS = MAX_WINDOW_HOURS + 48;
export const PRUNE_BATCH_SIZE = 500;

/**
 * Upper edges (inclusive, ms) of the duration histogram bins; one more bin holds anything
 * longer. Fixed: changing it needs a migration of the existing buckets.
 */
export const DURATION_BIN_UPPER_MS: readonly number[] = [
  1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 420, 600, 900, 1200, 1800, 2700, 3600,
  7200, 14400, 28800, 86400,
].map((seconds) => seconds * 1000);
export const BIN_COUNT = DURATION_BIN_UPPER_MS.length + 1;

export function hourStart(time: number): number {
  return Math.floor(time / HOUR_MS) * HOUR_MS;
}

/** FNV-1a over the id's characters, reduced to a shard number. Stable for a given id. */
export function shardOf(id: string, shards = METRIC_SHARDS): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % shards;
}

/** Index of the histogram bin a duration falls into (the last one is the overflow bin). */
export function durationBin(ms: number): number {
  const index = DURATION_BIN_UPPER_MS.findIndex((upper) => ms <= upper);
  return index === -1 ? BIN_COUNT - 1 : index;
}

export function emptyDurations(): DurationStats {
  return { count: 0, sumMs: 0, maxMs: 0, bins: new Array<number>(BIN_COUNT).fill(0) };
}

export function emptyPlanCounts(): PlanCounts {
  return { starter: 0, creator: 0, studio: 0 };
}

type BucketFields = Omit<Doc<"metricsBuckets">, "_id" | "_creationTime">;

export function emptyHourStats(): HourStats {
  return {
    creditsConsumed: 0,
    jobsDone: 0,
    jobsFailed: 0,
    jobsCanceled: 0,
    queuedToDone: emptyDurations(),
    runningToDone: emptyDurations(),
    activeUsers: emptyPlanCounts(),
    paymentsSucceeded: 0,
    paymentsFailed: 0,
    renewalsPaid: 0,
    renewalsFailed: 0,
    subscriptionsCanceled: 0,
    creditsExpired: 0,
    mandateRenewalsPaid: 0,
    mandateRenewalsFailed: 0,
    dunningRecoveries: 0,
    canceledVoluntarily: 0,
    canceledUnpaid: 0,
  };
}

/** The counters added after the first day rows were written: absent on older rows (0). */
const LATER_COUNTERS = [
  "mandateRenewalsPaid",
  "mandateRenewalsFailed",
  "dunningRecoveries",
  "canceledVoluntarily",
  "canceledUnpaid",
] as const;

/** Adds `from` (a bucket, or a folded hour) into `into`. */
export function addHourStats(into: HourStats, from: HourStats | BucketFields): void {
  into.creditsConsumed += from.creditsConsumed;
  into.jobsDone += from.jobsDone;
  into.jobsFailed += from.jobsFailed;
  into.jobsCanceled += from.jobsCanceled;
  into.paymentsSucceeded += from.paymentsSucceeded;
  into.paymentsFailed += from.paymentsFailed;
  into.renewalsPaid += from.renewalsPaid ?? 0;
  into.renewalsFailed += from.renewalsFailed ?? 0;
  into.subscriptionsCanceled += from.subscriptionsCanceled ?? 0;
  into.creditsExpired += from.creditsExpired ?? 0;
  for (const key of LATER_COUNTERS) {
    into[key] = (into[key] ?? 0) + (from[key] ?? 0);
  }
  addDurations(into.queuedToDone, from.queuedToDone);
  addDurations(into.runningToDone, from.runningToDone);
  addPlanCounts(into.activeUsers, from.activeUsers);
}

export function addPlanCounts(into: PlanCounts, from: PlanCounts): void {
  for (const plan of Object.keys(into) as PlanName[]) {
    into[plan] += from[plan];
  }
}

function addDurations(into: DurationStats, from: DurationStats): void {
  into.count += from.count;
  into.sumMs += from.sumMs;
  into.maxMs = Math.max(into.maxMs, from.maxMs);
  from.bins.forEach((n, i) => {
    if (i < BIN_COUNT) into.bins[i] += n;
  });
}

function addDuration(stats: DurationStats, ms: number): DurationStats {
  const duration = Math.max(0, ms);
  const bins = stats.bins.length === BIN_COUNT ? [...stats.bins] : emptyDurations().bins;
  bins[durationBin(duration)] += 1;
  return {
    count: stats.count + 1,
    sumMs: stats.sumMs + duration,
    maxMs: Math.max(stats.maxMs, duration),
    bins,
  };
}

/**
 * The fields `delta` changes in `bucket`, added. Active users never go below zero in a bucket
 * (`floor`, even if one was edited by hand); a pending delta added to a window does not floor.
 */
export function applyDelta(
  bucket: HourStats,
  delta: BucketDelta,
  floor = true,
): Partial<HourStats> {
  const patch: Partial<HourStats> = {};
  const counters = [
    "creditsConsumed",
    "jobsDone",
    "jobsFailed",
    "jobsCanceled",
    "paymentsSucceeded",
    "paymentsFailed",
    "renewalsPaid",
    "renewalsFailed",
    "subscriptionsCanceled",
    "creditsExpired",
    ...LATER_COUNTERS,
  ] as const;
  for (const key of counters) {
    const add = delta[key];
    if (add !== undefined && add !== 0) {
      patch[key] = (bucket[key] ?? 0) + add;
    }
  }
  if (delta.queuedToDoneMs !== undefined) {
    patch.queuedToDone = addDuration(bucket.queuedToDone, delta.queuedToDoneMs);
  }
  if (delta.runningToDoneMs !== undefined) {
    patch.runningToDone = addDuration(bucket.runningToDone, delta.runningToDoneMs);
  }
  if (delta.activeUsers !== undefined) {
    const counts = { ...bucket.activeUsers };
    for (const plan of Object.keys(delta.activeUsers) as PlanName[]) {
      const count = counts[plan] + (delta.activeUsers[plan] ?? 0);
      counts[plan] = floor ? Math.max(0, count) : count;
    }
    patch.activeUsers = counts;
  }
  return patch;
}

async function findBucket(
  ctx: QueryCtx,
  hour: number,
  shard: number,
): Promise<Doc<"metricsBuckets"> | null> {
  return await ctx.db
    .query("metricsBuckets")
    .withIndex("by_hour_and_shard", (q) => q.eq("hour", hour).eq("shard", shard))
    .unique();
}

/**
 * Adds a batch of deltas (oldest first) to the (hour, shard) bucket: one read and one write
 * however many there are. A delta with `create: false` adds nothing while the bucket does not
 * exist (a user moving out of an hour whose bucket was pruned).
 */
export async function applyBucketDeltas(
  ctx: MutationCtx,
  hour: number,
  shard: number,
  deltas: { delta: BucketDelta; create?: boolean }[],
): Promise<void> {
  const existing = await findBucket(ctx, hour, shard);
  // Counters absent on older rows read as 0.
  let stats: HourStats | null = null;
  if (existing !== null) {
    stats = emptyHourStats();
    addHourStats(stats, existing);
  }
  const patch: Partial<HourStats> = {};
  for (const { delta, create } of deltas) {
    if (stats === null) {
      if (create === false) continue;
      stats = emptyHourStats();
    }
    const changed = applyDelta(stats, delta);
    stats = { ...stats, ...changed };
    Object.assign(patch, changed);
  }
  if (stats === null) return;
  if (existing === null) {
    await ctx.db.insert("metricsBuckets", { hour, shard, ...stats });
    return;
  }
  // Only a user's activity moving on changes an hour that is over (the others count now);
  // once the hour is folded, the overview reads the change from metricsFoldedActivity.
  if (existing.folded === true && patch.activeUsers !== undefined) {
    await recordFoldedActivity(ctx, hour, shard, existing.activeUsers, patch.activeUsers);
  }
  if (Object.keys(patch).length > 0) {
    await ctx.db.patch("metricsBuckets", existing._id, patch);
  }
}

/** Notes the change `before` -> `after` of a folded hour's active users in the shard's row. */
async function recordFoldedActivity(
  ctx: MutationCtx,
  hour: number,
  shard: number,
  before: PlanCounts,
  after: PlanCounts,
): Promise<void> {
  const row = await ctx.db
    .query("metricsFoldedActivity")
    .withIndex("by_shard", (q) => q.eq("shard", shard))
    .unique();
  const hours = [...(row?.hours ?? [])];
  let entry = hours.find((h) => h.hour === hour);
  if (entry === undefined) {
    entry = { hour, ...emptyPlanCounts() };
    hours.push(entry);
    hours.sort((a, b) => a.hour - b.hour);
  }
  for (const plan of Object.keys(before) as PlanName[]) {
    entry[plan] += after[plan] - before[plan];
  }
  if (row === null) {
    await ctx.db.insert("metricsFoldedActivity", { shard, hours });
  } else {
    await ctx.db.patch("metricsFoldedActivity", row._id, { hours });
  }
}

/** Deletes one batch of buckets older than the retention; says whether more may remain. */
export async function pruneBucketsBatch(
  ctx: MutationCtx,
  now: number,
): Promise<{ deleted: number; more: boolean }> {
  const cutoff = hourStart(now) - RETENTION_HOURS * HOUR_MS;
  const old = await ctx.db
    .query("metricsBuckets")
    .withIndex("by_hour_and_shard", (q) => q.lt("hour", cutoff))
    .take(PRUNE_BATCH_SIZE);
  for (const bucket of old) {
    await ctx.db.delete("metricsBuckets", bucket._id);
  }
  return { deleted: old.length, more: old.length === PRUNE_BATCH_SIZE };
}
