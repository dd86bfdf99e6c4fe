import { v, type Infer } from "convex/values";
import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import type { DurationStats, PlanCounts, PlanName } from "../lib/validators";
import { planCountsValidator } from "../lib/validators";

/**
 * Monitoring rollups.
 *
 * Every metric lives in `metricsBuckets` rows keyed by (UTC hour, shard). The helpers below are
 * called from the central write paths, in the same transaction as the change they count:
 *
 * - `recordJobOutcome`      from `transitionJob` (model/jobs.ts) when a job becomes done,
 *                           failed or canceled: outcome counts and, for done, its durations;
 * - `recordCreditsConsumed` from `settleJobCredits` (model/credits.ts): credits charged for good;
 * - `recordUserActivity`    from `upsertUser`, `changePlan` (model/users.ts) and `createJob`
 *                           (model/jobs.ts): active users per plan;
 * - `recordPaymentOutcome`  from the payments code, once per payment when it first succeeds or
 *                           fails.
 *
 * A writer picks its shard by hashing the job, user or payment id, so two concurrent mutations
 * write the same row only when they land in the same hour and shard (1 in METRIC_SHARDS): no
 * single hot document serialises all writers. `metrics.overview` reads only the bucket rows of
 * its window through the index: at most hours x METRIC_SHARDS rows, whatever the table sizes.
 */

export const HOUR_MS = 60 * 60 * 1000;
/** Rows per hour. A small fixed number: changing it only affects hours written afterwards. */
export const METRIC_SHARDS = 8;
export const DEFAULT_WINDOW_HOURS = 24;
export const MAX_WINDOW_HOURS = 720;
/** Buckets older than this are deleted by the `metrics:pruneOldBuckets` cron. */
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
const BIN_COUNT = DURATION_BIN_UPPER_MS.length + 1;

export function hourStart(time: number): number {
  return Math.floor(time / HOUR_MS) * HOUR_MS;
}

/** FNV-1a over the id's characters, reduced to a shard number. Stable for a given id. */
export function shardOf(id: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % METRIC_SHARDS;
}

/** Index of the histogram bin a duration falls into (the last one is the overflow bin). */
export function durationBin(ms: number): number {
  const index = DURATION_BIN_UPPER_MS.findIndex((upper) => ms <= upper);
  return index === -1 ? BIN_COUNT - 1 : index;
}

function emptyDurations(): DurationStats {
  return { count: 0, sumMs: 0, maxMs: 0, bins: new Array<number>(BIN_COUNT).fill(0) };
}

function emptyPlanCounts(): PlanCounts {
  return { starter: 0, creator: 0, studio: 0 };
}

type BucketFields = Omit<Doc<"metricsBuckets">, "_id" | "_creationTime">;

function emptyBucket(hour: number, shard: number): BucketFields {
  return {
    hour,
    shard,
    creditsConsumed: 0,
    jobsDone: 0,
    jobsFailed: 0,
    jobsCanceled: 0,
    queuedToDone: emptyDurations(),
    runningToDone: emptyDurations(),
    activeUsers: emptyPlanCounts(),
    paymentsSucceeded: 0,
    paymentsFailed: 0,
  };
}

/** What one event adds to a bucket. */
type BucketDelta = {
  creditsConsumed?: number;
  jobsDone?: number;
  jobsFailed?: number;
  jobsCanceled?: number;
  queuedToDoneMs?: number;
  runningToDoneMs?: number;
  activeUsers?: Partial<PlanCounts>;
  paymentsSucceeded?: number;
  paymentsFailed?: number;
};

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

function applyDelta(bucket: BucketFields, delta: BucketDelta): Partial<BucketFields> {
  const patch: Partial<BucketFields> = {};
  const counters = [
    "creditsConsumed",
    "jobsDone",
    "jobsFailed",
    "jobsCanceled",
    "paymentsSucceeded",
    "paymentsFailed",
  ] as const;
  for (const key of counters) {
    const add = delta[key];
    if (add !== undefined && add !== 0) {
      patch[key] = bucket[key] + add;
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
      // Never below zero, even if a bucket was edited by hand.
      counts[plan] = Math.max(0, counts[plan] + (delta.activeUsers[plan] ?? 0));
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
 * Adds `delta` to the (hour, shard) bucket, creating it when `create` (two transactions that
 * both create it conflict on the index range they read, so Convex retries one: never two rows).
 */
async function bumpBucket(
  ctx: MutationCtx,
  hour: number,
  shard: number,
  delta: BucketDelta,
  create = true,
): Promise<void> {
  const existing = await findBucket(ctx, hour, shard);
  if (existing !== null) {
    await ctx.db.patch("metricsBuckets", existing._id, applyDelta(existing, delta));
  } else if (create) {
    const fresh = emptyBucket(hour, shard);
    await ctx.db.insert("metricsBuckets", { ...fresh, ...applyDelta(fresh, delta) });
  }
}

/**
 * Counts a job that just became done, failed or canceled, in the hour it finished. For done
 * jobs also its durations: queued->done from `createdAt`, running->done from the `startedAt` of
 * the attempt that succeeded (a retried job's earlier attempts are not included).
 */
export async function recordJobOutcome(
  ctx: MutationCtx,
  job: Doc<"jobs">,
  outcome: "done" | "failed" | "canceled",
  now: number,
): Promise<void> {
  let delta: BucketDelta;
  if (outcome === "done") {
    const finishedAt = job.finishedAt ?? now;
    delta = {
      jobsDone: 1,
      queuedToDoneMs: finishedAt - job.createdAt,
      runningToDoneMs: job.startedAt === undefined ? undefined : finishedAt - job.startedAt,
    };
  } else {
    delta = outcome === "failed" ? { jobsFailed: 1 } : { jobsCanceled: 1 };
  }
  await bumpBucket(ctx, hourStart(now), shardOf(job._id), delta);
}

/** Credits charged for good (a job's reservation settled), in the hour of settlement. */
export async function recordCreditsConsumed(
  ctx: MutationCtx,
  job: Doc<"jobs">,
  credits: number,
  now = Date.now(),
): Promise<void> {
  await bumpBucket(ctx, hourStart(now), shardOf(job._id), { creditsConsumed: credits });
}

/**
 * A payment reached its outcome: call exactly once per payment, when it first succeeds
 * (credits granted) or fails for good. Not for refunds, not again on executed -> settled.
 */
export async function recordPaymentOutcome(
  ctx: MutationCtx,
  payment: { paymentId: Id<"payments">; succeeded: boolean },
  now = Date.now(),
): Promise<void> {
  await bumpBucket(
    ctx,
    hourStart(now),
    shardOf(payment.paymentId),
    payment.succeeded ? { paymentsSucceeded: 1 } : { paymentsFailed: 1 },
  );
}

/**
 * The user was active now (signed in, created a job or changed plan). Each user is counted in
 * exactly one bucket: the hour of their latest activity, under the plan they had then. So the
 * buckets of any window ending now add up to the distinct users active in that window, by
 * their current plan. Writes only when the hour or the plan changes (at most once an hour per
 * user otherwise). Returns the fields it patched on the user.
 */
export async function recordUserActivity(
  ctx: MutationCtx,
  user: Doc<"users">,
  plan: PlanName = user.plan,
  now = Date.now(),
): Promise<Partial<Doc<"users">>> {
  const hour = hourStart(now);
  const previousHour = user.lastActiveHour;
  const previousPlan = user.lastActivePlan;
  if (previousHour === hour && previousPlan === plan) {
    return {};
  }
  const shard = shardOf(user._id);
  if (previousHour !== undefined && previousPlan !== undefined) {
    if (previousHour === hour) {
      await bumpBucket(ctx, hour, shard, { activeUsers: { [previousPlan]: -1, [plan]: 1 } });
    } else {
      // The old bucket may have been pruned: then there is nothing to take the user out of.
      await bumpBucket(ctx, previousHour, shard, { activeUsers: { [previousPlan]: -1 } }, false);
      await bumpBucket(ctx, hour, shard, { activeUsers: { [plan]: 1 } });
    }
  } else {
    await bumpBucket(ctx, hour, shard, { activeUsers: { [plan]: 1 } });
  }
  const patch = { lastActiveHour: hour, lastActivePlan: plan };
  await ctx.db.patch("users", user._id, patch);
  return patch;
}

const durationSummaryValidator = v.object({
  /** Done jobs with this duration measured. */
  count: v.number(),
  avgMs: v.union(v.number(), v.null()),
  /** Upper edge of the histogram bin holding the 95th percentile, capped at the longest seen. */
  p95Ms: v.union(v.number(), v.null()),
});

export const overviewValidator = v.object({
  hours: v.number(),
  /** Start of the oldest hour in the window (ms). */
  from: v.number(),
  /** End of the newest hour of the window (ms, exclusive): the window is [from, to). */
  to: v.number(),
  credits: v.object({
    consumed: v.number(),
    /** consumed / hours. */
    perHour: v.number(),
  }),
  jobs: v.object({
    done: v.number(),
    failed: v.number(),
    canceled: v.number(),
    /** done / (done + failed); null when neither happened. Canceled jobs do not count. */
    successRatio: v.union(v.number(), v.null()),
  }),
  durations: v.object({
    queuedToDone: durationSummaryValidator,
    runningToDone: durationSummaryValidator,
  }),
  /** Distinct users whose latest activity is in the window, by plan. */
  activeUsers: v.object({ ...planCountsValidator.fields, total: v.number() }),
  payments: v.object({
    succeeded: v.number(),
    failed: v.number(),
    /** succeeded / (succeeded + failed); null when neither happened. */
    successRatio: v.union(v.number(), v.null()),
  }),
  /** One entry per hour of the window, oldest first, hours without activity included. */
  hourly: v.array(
    v.object({
      hour: v.number(),
      creditsConsumed: v.number(),
      jobsDone: v.number(),
      jobsFailed: v.number(),
      jobsCanceled: v.number(),
      paymentsSucceeded: v.number(),
      paymentsFailed: v.number(),
    }),
  ),
});
export type Overview = Infer<typeof overviewValidator>;

/**
 * The start of the window's newest UTC hour, as a client passes it: a whole number of hours
 * since the epoch, in ms (`Math.floor(Date.now() / HOUR_MS) * HOUR_MS`).
 */
export function validateEndHour(endHour: number): number {
  if (!Number.isSafeInteger(endHour) || endHour < 0 || endHour % HOUR_MS !== 0) {
    throw appError(
      "INVALID_ARGUMENT",
      `endHour must be the start of a UTC hour in ms (a whole multiple of ${HOUR_MS}, >= 0).`,
    );
  }
  return endHour;
}

/**
 * The newest hour holding a rollup row (0 when there is none): the window's end for callers
 * that do not say which hour they want. Read through the index (one row); a write in a newer
 * hour lands in this read, so a subscription moves on with the first event of each hour.
 */
export async function newestBucketHour(ctx: QueryCtx): Promise<number> {
  const newest = await ctx.db
    .query("metricsBuckets")
    .withIndex("by_hour_and_shard")
    .order("desc")
    .first();
  return newest?.hour ?? 0;
}

export function validateWindowHours(hours: number): number {
  if (!Number.isInteger(hours) || hours < 1 || hours > MAX_WINDOW_HOURS) {
    throw appError(
      "INVALID_ARGUMENT",
      `hours must be a whole number from 1 to ${MAX_WINDOW_HOURS}.`,
    );
  }
  return hours;
}

function mergeDurations(into: DurationStats, from: DurationStats): void {
  into.count += from.count;
  into.sumMs += from.sumMs;
  into.maxMs = Math.max(into.maxMs, from.maxMs);
  from.bins.forEach((n, i) => {
    if (i < BIN_COUNT) into.bins[i] += n;
  });
}

/** Nearest-rank p95 read off the histogram (see `durationSummaryValidator`). */
export function p95FromHistogram(stats: DurationStats): number | null {
  if (stats.count === 0) {
    return null;
  }
  const rank = Math.ceil(0.95 * stats.count);
  let seen = 0;
  for (let i = 0; i < BIN_COUNT; i++) {
    seen += stats.bins[i];
    if (seen >= rank) {
      const upper = i < DURATION_BIN_UPPER_MS.length ? DURATION_BIN_UPPER_MS[i] : Infinity;
      return Math.min(upper, stats.maxMs);
    }
  }
  return stats.maxMs;
}

function summarise(stats: DurationStats) {
  return {
    count: stats.count,
    avgMs: stats.count === 0 ? null : stats.sumMs / stats.count,
    p95Ms: p95FromHistogram(stats),
  };
}

function ratio(good: number, bad: number): number | null {
  return good + bad === 0 ? null : good / (good + bad);
}

/**
 * The metrics of the `hours` hours ending with the hour that starts at `endHour` (that hour and
 * the `hours - 1` before it). Reads only that window's bucket rows, through the index. No clock:
 * the caller names the hour (see `metrics.overview`).
 */
export async function metricsOverview(
  ctx: QueryCtx,
  hours: number,
  endHour: number,
): Promise<Overview> {
  validateWindowHours(hours);
  const last = validateEndHour(endHour);
  const from = last - (hours - 1) * HOUR_MS;
  const buckets = await ctx.db
    .query("metricsBuckets")
    .withIndex("by_hour_and_shard", (q) => q.gte("hour", from).lte("hour", last))
    .take(hours * METRIC_SHARDS);

  const hourly = Array.from({ length: hours }, (_, i) => ({
    hour: from + i * HOUR_MS,
    creditsConsumed: 0,
    jobsDone: 0,
    jobsFailed: 0,
    jobsCanceled: 0,
    paymentsSucceeded: 0,
    paymentsFailed: 0,
  }));
  const queuedToDone = emptyDurations();
  const runningToDone = emptyDurations();
  const activeUsers = emptyPlanCounts();
  for (const bucket of buckets) {
    const row = hourly[Math.round((bucket.hour - from) / HOUR_MS)];
    row.creditsConsumed += bucket.creditsConsumed;
    row.jobsDone += bucket.jobsDone;
    row.jobsFailed += bucket.jobsFailed;
    row.jobsCanceled += bucket.jobsCanceled;
    row.paymentsSucceeded += bucket.paymentsSucceeded;
    row.paymentsFailed += bucket.paymentsFailed;
    mergeDurations(queuedToDone, bucket.queuedToDone);
    mergeDurations(runningToDone, bucket.runningToDone);
    for (const plan of Object.keys(activeUsers) as PlanName[]) {
      activeUsers[plan] += bucket.activeUsers[plan];
    }
  }
  const sum = (key: Exclude<keyof (typeof hourly)[number], "hour">) =>
    hourly.reduce((total, row) => total + row[key], 0);
  const consumed = sum("creditsConsumed");
  const done = sum("jobsDone");
  const failed = sum("jobsFailed");
  const succeeded = sum("paymentsSucceeded");
  const paymentsFailed = sum("paymentsFailed");
  return {
    hours,
    from,
    to: last + HOUR_MS,
    credits: { consumed, perHour: consumed / hours },
    jobs: { done, failed, canceled: sum("jobsCanceled"), successRatio: ratio(done, failed) },
    durations: {
      queuedToDone: summarise(queuedToDone),
      runningToDone: summarise(runningToDone),
    },
    activeUsers: {
      ...activeUsers,
      total: activeUsers.starter + activeUsers.creator + activeUsers.studio,
    },
    payments: {
      succeeded,
      failed: paymentsFailed,
      successRatio: ratio(succeeded, paymentsFailed),
    },
    hourly,
  };
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
