import { v } from "convex/values";
import { internal } from "./_generated/api";
import { internalMutation, query } from "./_generated/server";
import { requireAdmin } from "./lib/auth";
import {
  DEFAULT_WINDOW_HOURS,
  metricsOverview,
  overviewValidator,
  pruneBucketsBatch,
} from "./model/metrics";

/**
 * The operator dashboard: credits consumed, job outcomes and durations, active users per plan
 * and payment outcomes over the last `hours` hours (default 24, at most 720; the current hour
 * counts as one). Admins only (`users:setRole`). Reads only the window's rollup rows, so its
 * cost does not grow with the number of jobs, users or payments.
 */
export const overview = query({
  args: { hours: v.optional(v.number()) },
  returns: overviewValidator,
  handler: async (ctx, { hours }) => {
    await requireAdmin(ctx);
    return await metricsOverview(ctx, hours ?? DEFAULT_WINDOW_HOURS, Date.now());
  },
});

/**
 * Daily cron: deletes rollup rows older than the retention (longer than the largest window).
 * One bounded batch per transaction; it schedules itself again while a backlog remains.
 */
export const pruneOldBuckets = internalMutation({
  args: {},
  returns: v.object({ deleted: v.number(), more: v.boolean() }),
  handler: async (ctx) => {
    const result = await pruneBucketsBatch(ctx, Date.now());
    if (result.more) {
      await ctx.scheduler.runAfter(0, internal.metrics.pruneOldBuckets, {});
    }
    return result;
  },
});
