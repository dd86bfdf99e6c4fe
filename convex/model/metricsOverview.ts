import { v, type Infer } from "convex/values";
import type { QueryCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import type { DurationStats, HourStats } from "../lib/validators";
import { planCountsValidator } from "../lib/validators";
import {
  BIN_COUNT,
  DURATION_BIN_UPPER_MS,
  HOUR_MS,
  MAX_WINDOW_HOURS,
  addHourStats,
  emptyHourStats,
} from "./metricsBuckets";
import { addPendingDeltas, newestDeltaHour } from "./metricsBucketDeltas";
import { readWindow } from "./metricsDays";
import { readSubscriptionGauges } from "./subscriptionTotals";

/** The read half of the metrics: one window of rollups, summed (`metrics.overview`). */

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
    /** Credits lots lost at their expiry in the window (unheld credits). */
    expired: v.number(),
  }),
  subscriptions: v.object({
    /** Active subscriptions now (not past_due), by plan. */
    active: v.object({ ...planCountsValidator.fields, total: v.number() }),
    /** Monthly recurring revenue of the active subscriptions now, minor units per currency. */
    mrr: v.array(v.object({ currency: v.string(), amountMinor: v.number() })),
    /**
     * Subscription changes the fold (every minute) has not added to the totals yet, counted up
     * to 17 (PENDING_READ_LIMIT + 1, model/subscriptionTotals.ts). `active` and `mrr` include
     * them when `exact`; otherwise (more than 16 waiting, as after a burst of period ends) only
     * the oldest 16, and they lag until the fold has caught up.
     */
    pending: v.number(),
    exact: v.boolean(),
    /** In the window. */
    renewalsPaid: v.number(),
    renewalsFailed: v.number(),
    canceled: v.number(),
  }),
  /** Renewals and churn in the window (docs/metrics.md). */
  renewals: v.object({
    /** Renewal payments that succeeded / failed, by how they were paid. */
    paid: v.object({ mandate: v.number(), manual: v.number() }),
    failed: v.object({ mandate: v.number(), manual: v.number() }),
    /** past_due subscriptions whose grace period got paid (a dunning retry, or the user). */
    dunningRecoveries: v.number(),
    /** Canceled: the user's cancel took effect / the grace ended unpaid (deletions in neither). */
    churn: v.object({ voluntary: v.number(), involuntary: v.number() }),
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
  /**
   * Counted changes of the window the fold (every minute) has not added to the hourly buckets
   * yet, counted up to 17 (PENDING_READ_LIMIT + 1, model/metricsBucketDeltas.ts). Every figure
   * above except the subscription gauges includes them when `exact`; otherwise (more than 16
   * waiting, as during a cron drain) only the oldest 16, and they lag until the fold catches up.
   */
  rollups: v.object({ pending: v.number(), exact: v.boolean() }),
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
 * The newest hour holding a rollup row or an unfolded delta (0 when there is none): the window's
 * end for callers that do not say which hour they want. Read through the indexes (a row each); a
 * change in a newer hour lands in this read, so a subscription moves on with the first event of
 * each hour.
 */
export async function newestBucketHour(ctx: QueryCtx): Promise<number> {
  const newest = await ctx.db
    .query("metricsBuckets")
    .withIndex("by_hour_and_shard")
    .order("desc")
    .first();
  return Math.max(newest?.hour ?? 0, await newestDeltaHour(ctx));
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

function renewalsOf(total: HourStats): Overview["renewals"] {
  const mandatePaid = total.mandateRenewalsPaid ?? 0;
  const mandateFailed = total.mandateRenewalsFailed ?? 0;
  return {
    paid: { mandate: mandatePaid, manual: total.renewalsPaid - mandatePaid },
    failed: { mandate: mandateFailed, manual: total.renewalsFailed - mandateFailed },
    dunningRecoveries: total.dunningRecoveries ?? 0,
    churn: { voluntary: total.canceledVoluntarily ?? 0, involuntary: total.canceledUnpaid ?? 0 },
  };
}

/** The subscription gauges now: the folded totals plus the changes not folded yet. */
async function subscriptionGauges(
  ctx: QueryCtx,
  inWindow: { renewalsPaid: number; renewalsFailed: number; canceled: number },
) {
  const { active, mrr, pending, exact } = await readSubscriptionGauges(ctx);
  return {
    active: { ...active, total: active.starter + active.creator + active.studio },
    mrr: Object.entries(mrr)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([currency, amountMinor]) => ({ currency, amountMinor })),
    pending,
    exact,
    ...inWindow,
  };
}

/**
 * The metrics of the `hours` hours ending with the hour that starts at `endHour` (that hour and
 * the `hours - 1` before it). Reads the window's day rows and the buckets of the hours not
 * folded yet (metricsDays.ts), and the window's unfolded deltas, through the indexes. No clock: the caller names the hour (see
 * `metrics.overview`). `source` is for the tests that compare with adding up the buckets.
 */
export async function metricsOverview(
  ctx: QueryCtx,
  hours: number,
  endHour: number,
  source: "rollups" | "buckets" = "rollups",
): Promise<Overview> {
  validateWindowHours(hours);
  const last = validateEndHour(endHour);
  const from = last - (hours - 1) * HOUR_MS;
  const window = await readWindow(ctx, from, last, source);
  const rollups = await addPendingDeltas(ctx, window, from, last);
  const total = emptyHourStats();
  for (const stats of window) {
    addHourStats(total, stats);
  }
  const hourly = window.map((stats, i) => ({
    hour: from + i * HOUR_MS,
    creditsConsumed: stats.creditsConsumed,
    jobsDone: stats.jobsDone,
    jobsFailed: stats.jobsFailed,
    jobsCanceled: stats.jobsCanceled,
    paymentsSucceeded: stats.paymentsSucceeded,
    paymentsFailed: stats.paymentsFailed,
  }));
  const { creditsConsumed: consumed, jobsDone: done, jobsFailed: failed } = total;
  const { paymentsSucceeded: succeeded, paymentsFailed } = total;
  const activeUsers = total.activeUsers;
  return {
    hours,
    from,
    to: last + HOUR_MS,
    credits: { consumed, perHour: consumed / hours, expired: total.creditsExpired },
    subscriptions: await subscriptionGauges(ctx, {
      renewalsPaid: total.renewalsPaid,
      renewalsFailed: total.renewalsFailed,
      canceled: total.subscriptionsCanceled,
    }),
    renewals: renewalsOf(total),
    jobs: { done, failed, canceled: total.jobsCanceled, successRatio: ratio(done, failed) },
    durations: {
      queuedToDone: summarise(total.queuedToDone),
      runningToDone: summarise(total.runningToDone),
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
    rollups,
    hourly,
  };
}
