import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import type { BucketDelta, PlanName } from "../convex/lib/validators";
import { recordBucketDelta } from "../convex/model/metricsBucketDeltas";
import {
  HOUR_MS,
  METRIC_SHARDS,
  RETENTION_HOURS,
  emptyHourStats,
  hourStart,
} from "../convex/model/metricsBuckets";
import { FOLD_DELAY_MS } from "../convex/model/metricsDays";
import { metricsOverview } from "../convex/model/metricsOverview";
import { recordUserActivity } from "../convex/model/metricsRollups";
import { foldBucketDeltas, setup, signUp, type TestConvex } from "./support/setup";

/** Monday 6 January 2025, 00:00 UTC. */
const T0 = Date.UTC(2025, 0, 6);
const MIN = 60 * 1000;
const PLANS: PlanName[] = ["starter", "creator", "studio"];

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(T0);
});
afterEach(() => {
  vi.useRealTimers();
});

/** The hourly fold, run until no complete hour waits. */
async function foldHours(t: TestConvex): Promise<number> {
  let folded = 0;
  for (;;) {
    const result = await t.mutation(internal.metrics.foldHours, {});
    folded += result.folded;
    if (!result.more) return folded;
  }
}

/** Both folds, as the crons would after a few minutes: the deltas first, then the hours. */
async function foldAll(t: TestConvex): Promise<number> {
  await foldBucketDeltas(t);
  return await foldHours(t);
}

async function bothWays(t: TestConvex, hours: number, endHour: number) {
  return await t.run(async (ctx) => ({
    rollups: await metricsOverview(ctx, hours, endHour, "rollups"),
    buckets: await metricsOverview(ctx, hours, endHour, "buckets"),
  }));
}

const delta: fc.Arbitrary<BucketDelta> = fc.record(
  {
    creditsConsumed: fc.integer({ min: 0, max: 500 }),
    jobsDone: fc.integer({ min: 0, max: 3 }),
    jobsFailed: fc.integer({ min: 0, max: 3 }),
    jobsCanceled: fc.integer({ min: 0, max: 3 }),
    queuedToDoneMs: fc.integer({ min: 0, max: 10 * HOUR_MS }),
    runningToDoneMs: fc.integer({ min: 0, max: 2 * HOUR_MS }),
    paymentsSucceeded: fc.integer({ min: 0, max: 2 }),
    paymentsFailed: fc.integer({ min: 0, max: 2 }),
    renewalsPaid: fc.integer({ min: 0, max: 2 }),
    renewalsFailed: fc.integer({ min: 0, max: 2 }),
    subscriptionsCanceled: fc.integer({ min: 0, max: 2 }),
    creditsExpired: fc.integer({ min: 0, max: 50 }),
  },
  { requiredKeys: [] },
);

/**
 * One step of the timeline: time passes, then an event is counted, a user is active, or a fold
 * runs (the deltas', the hours', or both).
 */
const step = fc.record({
  advanceMin: fc.oneof(fc.integer({ min: 0, max: 90 }), fc.integer({ min: 0, max: 40 * 60 })),
  action: fc.oneof(
    fc.record({ kind: fc.constant("event" as const), shard: fc.nat(METRIC_SHARDS - 1), delta }),
    fc.record({
      kind: fc.constant("activity" as const),
      user: fc.nat(3),
      plan: fc.constantFrom(...PLANS),
    }),
    fc.record({
      kind: fc.constantFrom("fold" as const, "foldDeltas" as const, "foldHours" as const),
    }),
  ),
});

describe("metrics.overview from day rows", () => {
  test("answers exactly as adding up the buckets, on random timelines folded at random times", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 5, maxLength: 30 }),
        fc.array(fc.tuple(fc.integer({ min: 1, max: 720 }), fc.nat(200)), {
          minLength: 3,
          maxLength: 6,
        }),
        async (steps, windows) => {
          vi.setSystemTime(T0);
          const t = await setup();
          const users: Id<"users">[] = [];
          for (let i = 0; i < 4; i++) users.push((await signUp(t, `u${i}`)).userId);
          let now = T0;
          for (const { advanceMin, action } of steps) {
            now += advanceMin * MIN;
            vi.setSystemTime(now);
            if (action.kind === "event") {
              await t.run(async (ctx) => {
                await recordBucketDelta(ctx, hourStart(now), action.shard, action.delta);
              });
            } else if (action.kind === "activity") {
              await t.run(async (ctx) => {
                const user = (await ctx.db.get("users", users[action.user]))!;
                await recordUserActivity(ctx, user, action.plan, now);
              });
            } else if (action.kind === "foldDeltas") {
              await foldBucketDeltas(t);
            } else if (action.kind === "foldHours") {
              await foldHours(t);
            } else {
              await foldAll(t);
            }
          }
          // Windows ending anywhere from the first hour to a few hours past the last event.
          const ends = windows.map(([hours, offset]) => ({
            hours,
            endHour: Math.min(hourStart(now) + 3 * HOUR_MS, T0 + offset * HOUR_MS),
          }));
          const before = [];
          for (const { hours, endHour } of ends) {
            const { rollups, buckets } = await bothWays(t, hours, endHour);
            expect(rollups).toEqual(buckets);
            before.push(rollups);
          }
          // Once the deltas are folded, an overview that said it was exact says the same.
          await foldBucketDeltas(t);
          for (const [i, { hours, endHour }] of ends.entries()) {
            const { rollups, buckets } = await bothWays(t, hours, endHour);
            expect(rollups).toEqual(buckets);
            expect(rollups.rollups).toEqual({ pending: 0, exact: true });
            if (before[i].rollups.exact) {
              expect({ ...rollups, rollups: null }).toEqual({ ...before[i], rollups: null });
            }
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  test("a 30-day window reads its day rows and the current hour's buckets", async () => {
    const t = await setup();
    const admin = await signUp(t, "admin");
    await t.mutation(internal.users.setRole, { userId: admin.userId, role: "admin" });
    const now = T0 + 40 * 24 * HOUR_MS + 12 * HOUR_MS + 30 * MIN;
    vi.setSystemTime(now);
    // A bucket in every hour of the retention, all shards of the current hour.
    for (let h = 0; h <= RETENTION_HOURS; h += 96) {
      await t.run(async (ctx) => {
        for (let i = h; i < Math.min(h + 96, RETENTION_HOURS + 1); i++) {
          for (let shard = 0; shard < (i === 0 ? METRIC_SHARDS : 1); shard++) {
            await ctx.db.insert("metricsBuckets", {
              hour: hourStart(now) - i * HOUR_MS,
              shard,
              ...emptyHourStats(),
              jobsDone: 1,
            });
          }
        }
      });
    }
    const read = async () =>
      await admin.as.run(async (ctx) => {
        const before = (await ctx.meta.getTransactionMetrics()).documentsRead.used;
        const overview = await ctx.runQuery(api.metrics.overview, {
          hours: 720,
          endHour: hourStart(now),
        });
        const after = (await ctx.meta.getTransactionMetrics()).documentsRead.used;
        return { overview, documentsRead: after - before };
      });
    const unfolded = await read();
    expect(unfolded.documentsRead).toBe(719 + METRIC_SHARDS + 1);
    expect(await foldAll(t)).toBeGreaterThan(720);
    const folded = await read();
    expect(folded.overview).toEqual(unfolded.overview);
    expect(folded.overview.jobs.done).toBe(719 + METRIC_SHARDS);
    // 31 day rows (the window starts and ends mid-day), the current hour's 8 buckets, the
    // caller; no subscription gauges or folded activity rows exist here (with them, 16 + 8 more).
    expect(folded.documentsRead).toBe(31 + METRIC_SHARDS + 1);
  });

  test("an hour is not folded into its day row while its deltas wait for the minute fold", async () => {
    const t = await setup();
    const H = hourStart(T0);
    await t.run(async (ctx) => {
      await recordBucketDelta(ctx, H, 0, { jobsDone: 1 });
    });
    vi.setSystemTime(H + HOUR_MS + FOLD_DELAY_MS);
    // The job's outcome waits as a delta: hour H stays with the buckets.
    expect(await t.mutation(internal.metrics.foldHours, {})).toEqual({ folded: 0, more: false });
    expect(await t.run(async (ctx) => await ctx.db.query("metricsDays").collect())).toEqual([]);
    await foldBucketDeltas(t);
    expect(await t.mutation(internal.metrics.foldHours, {})).toEqual({ folded: 1, more: false });
    const [day] = await t.run(async (ctx) => await ctx.db.query("metricsDays").collect());
    expect(day.hours[0].jobsDone).toBe(1);
  });

  test("a user active again after their hour was folded moves out of it, as from the bucket", async () => {
    const t = await setup();
    const { userId } = await signUp(t, "mover");
    const H = hourStart(T0);
    vi.setSystemTime(H + 2 * HOUR_MS + FOLD_DELAY_MS);
    expect(await foldAll(t)).toBe(2);
    // A duplicate run folds nothing.
    expect(await t.mutation(internal.metrics.foldHours, {})).toEqual({ folded: 0, more: false });
    const before = await bothWays(t, 24, H + 2 * HOUR_MS);
    expect(before.rollups.activeUsers.total).toBe(1);
    await t.run(async (ctx) => {
      const user = (await ctx.db.get("users", userId))!;
      await recordUserActivity(ctx, user, "creator", H + 2 * HOUR_MS);
    });
    const after = await bothWays(t, 24, H + 2 * HOUR_MS);
    expect(after.rollups).toEqual(after.buckets);
    expect(after.rollups.activeUsers).toMatchObject({ starter: 0, creator: 1, total: 1 });
    expect(after.rollups.hourly.length).toBe(24);
    expect(after.rollups.rollups).toEqual({ pending: 2, exact: true });
    // Folded, the move out of the folded hour is noted beside its day row: the same answer.
    await foldBucketDeltas(t);
    expect((await bothWays(t, 24, H + 2 * HOUR_MS)).rollups).toEqual({
      ...after.rollups,
      rollups: { pending: 0, exact: true },
    });
    const moved = await t.run(async (ctx) => await ctx.db.query("metricsFoldedActivity").collect());
    expect(moved.flatMap((row) => row.hours)).toEqual([
      { hour: H, starter: -1, creator: 0, studio: 0 },
    ]);
  });

  test("pruning drops day rows and folded activity past the retention, and only those", async () => {
    const t = await setup();
    const { userId } = await signUp(t, "old");
    const H = hourStart(T0);
    vi.setSystemTime(H + 30 * HOUR_MS);
    await foldAll(t);
    await t.run(async (ctx) => {
      const user = (await ctx.db.get("users", userId))!;
      await recordUserActivity(ctx, user, "studio", H + 30 * HOUR_MS);
    });
    // The retention now starts at the first day's 6th hour.
    vi.setSystemTime(H + (RETENTION_HOURS + 5) * HOUR_MS);
    await foldAll(t);
    for (;;) {
      const result = await t.mutation(internal.metrics.pruneOldBuckets, {});
      if (!result.more) break;
    }
    const rows = await t.run(async (ctx) => ({
      days: await ctx.db.query("metricsDays").collect(),
      activity: await ctx.db.query("metricsFoldedActivity").collect(),
    }));
    // The first day straddles the cutoff: its first 5 hours are emptied, the row stays.
    expect(rows.days[0].day).toBe(H);
    expect(rows.days[0].hours.slice(0, 5).every((s) => s.activeUsers.starter === 0)).toBe(true);
    expect(rows.activity.flatMap((row) => row.hours)).toEqual([]);
    // A window reaching back past the cutoff: both ways, the pruned hours are empty.
    const { rollups, buckets } = await bothWays(t, 720, H + 720 * HOUR_MS);
    expect(rollups).toEqual(buckets);
  });
});
