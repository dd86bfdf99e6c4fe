import { v } from "convex/values";
import { adminQuery } from "./lib/functions";
import { sweepMutation } from "./lib/sweeps";
import {
  DEFAULT_WINDOW_HOURS,
  HOUR_MS,
  RETENTION_HOURS,
  hourStart,
  pruneBucketsBatch,
} from "./model/metricsBuckets";
import { foldBucketDeltasBatch } from "./model/metricsBucketDeltas";
import { foldHoursBatch, pruneFoldedBatch } from "./model/metricsDays";
import * as Metrics from "./model/metricsOverview";
import { foldSubscriptionTotalsBatch } from "./model/subscriptionTotals";

/**
 * The operator dashboard: credits consumed, job outcomes and durations, active users per plan
 * and payment outcomes over `hours` hours (default 24, at most 720) ending with the hour that
 * starts at `endHour`. Admins only (`users:setRole`). Reads only the window's rollup rows (a day
 * row per day, buckets for the hours not folded yet), so its cost does not grow with the number
 * of jobs, users or payments.
 *
 * No `Date.now()` here (a query that reads the clock is not re-run when time passes): a live
 * dashboard passes the current hour, `Math.floor(Date.now() / 3_600_000) * 3_600_000`, and
 * subscribes again with the next one at each hour boundary (every dashboard asks for the same
 * arguments within an hour, so they share one cached result). Without `endHour` (the CLI, older
 * clients) the window ends at the newest hour that has any recorded activity.
 */
export const overview = adminQuery({
  args: { hours: v.optional(v.number()), endHour: v.optional(v.number()) },
  returns: Metrics.overviewValidator,
  handler: async (ctx, { hours, endHour }) => {
    const windowHours = Metrics.validateWindowHours(hours ?? DEFAULT_WINDOW_HOURS);
    return await Metrics.metricsOverview(
      ctx,
      windowHours,
      endHour ?? (await Metrics.newestBucketHour(ctx)),
    );
  },
});

/**
 * Hourly cron: folds each hour that is over into its day row (model/metricsDays.ts), at most a
 * day's hours per transaction; it schedules itself again while complete hours remain (the first
 * run on a deployment folds the retained month). A duplicate run folds nothing twice.
 */
export const foldHours = sweepMutation({
  name: "metrics:foldHours",
  returns: v.object({ folded: v.number(), more: v.boolean() }),
  batch: (ctx, now) => foldHoursBatch(ctx, now),
});

/**
 * Daily cron: deletes rollup rows older than the retention (longer than the largest window):
 * buckets first, then day rows and folded activity changes. One bounded batch per transaction;
 * it schedules itself again while a backlog remains.
 */
export const pruneOldBuckets = sweepMutation({
  name: "metrics:pruneOldBuckets",
  returns: v.object({ deleted: v.number(), more: v.boolean() }),
  batch: async (ctx, now) => {
    const buckets = await pruneBucketsBatch(ctx, now);
    return buckets.more
      ? buckets
      : await pruneFoldedBatch(ctx, hourStart(now) - RETENTION_HOURS * HOUR_MS);
  },
});

/**
 * Every minute: adds the subscription changes recorded since (delta rows) to the subscription
 * gauges and deletes them, FOLD_BATCH per transaction, scheduling itself again while a backlog
 * remains (model/subscriptionTotals.ts). The only writer of `subscriptionTotals`.
 */
export const foldSubscriptionTotals = sweepMutation({
  name: "metrics:foldSubscriptionTotals",
  returns: v.object({ folded: v.number(), more: v.boolean() }),
  batch: (ctx) => foldSubscriptionTotalsBatch(ctx),
});

/**
 * Every minute: adds the counted changes recorded since (`metricsBucketDeltas` rows) to their
 * hourly buckets and deletes them, FOLD_BATCH per transaction, scheduling itself again while a
 * backlog remains (model/metricsBucketDeltas.ts). The only writer of `metricsBuckets` besides
 * the prune.
 */
export const foldBucketDeltas = sweepMutation({
  name: "metrics:foldBucketDeltas",
  returns: v.object({ folded: v.number(), more: v.boolean() }),
  batch: (ctx) => foldBucketDeltasBatch(ctx),
});
