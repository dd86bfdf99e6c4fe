import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import {
  DURATION_BIN_UPPER_MS,
  HOUR_MS,
  METRIC_SHARDS,
  PRUNE_BATCH_SIZE,
  RETENTION_HOURS,
  durationBin,
  shardOf,
} from "../convex/model/metricsBuckets";
import {
  FOLD_BATCH,
  foldBucketDeltasBatch,
  recordBucketDelta,
} from "../convex/model/metricsBucketDeltas";
import { p95FromHistogram } from "../convex/model/metricsOverview";
import { recordPaymentOutcome } from "../convex/model/metricsRollups";
import { checkInvariants } from "./support/invariants";
import {
  expectCode,
  foldBucketDeltas,
  identityFor,
  setup,
  signUp,
  type TestConvex,
} from "./support/setup";

const R2 = "https://videos.example.com/v.mp4";
const MIN = 60 * 1000;
/** Monday 6 January 2025, 10:00 UTC: the fixture's first hour. */
const H10 = Date.UTC(2025, 0, 6, 10);
const H11 = H10 + HOUR_MS;

function at(time: number) {
  vi.setSystemTime(time);
}

beforeEach(() => {
  vi.useFakeTimers();
  at(H10);
});

afterEach(() => {
  vi.useRealTimers();
});

async function signUpAdmin(t: TestConvex) {
  const admin = await signUp(t, "admin");
  await t.mutation(internal.users.setRole, { userId: admin.userId, role: "admin" });
  return admin.as;
}

async function setStatus(t: TestConvex, jobId: Id<"jobs">, status: "running" | "done" | "failed") {
  await t.mutation(internal.jobs.updateJobStatus, {
    jobId,
    status,
    ...(status === "done" ? { r2Url: R2 } : {}),
  });
}

async function paymentOutcomes(t: TestConvex, userId: Id<"users">, outcomes: boolean[]) {
  await t.run(async (ctx) => {
    for (const [i, succeeded] of outcomes.entries()) {
      const paymentId = await ctx.db.insert("payments", {
        userId,
        trueLayerTxnId: `txn_${i}_${Date.now()}`,
        amount: 1000,
        creditsAdded: succeeded ? 80 : 0,
        creditsPurchased: 80,
        timestamp: Date.now(),
        status: succeeded ? "settled" : "failed",
        planName: "starter",
        currency: "USD",
      });
      await recordPaymentOutcome(ctx, { paymentId, succeeded });
    }
  });
}

/**
 * The fixture, hour by hour (all times UTC, 6 January 2025):
 *
 * 10:05  admin, u1, u2, u3 sign up (starter)          -> 4 active, all starter, hour 10
 * 10:06  u2 -> creator, u3 -> studio                   -> starter 2, creator 1, studio 1
 * 10:10  u1 creates A (5 s), B (10 s), C (15 s); u2 creates D (10 s)
 * 10:12  A, B running
 * 10:13  A done     queued->done 3 min, running->done 1 min, 5 credits consumed
 * 10:15  u1 cancels C
 * 10:20  B failed
 * 11:05  D running; u1 creates E (5 s): u1's activity moves to hour 11
 * 11:10  payments: 3 succeeded, 1 failed
 * 11:35  D done     queued->done 85 min, running->done 30 min, 10 credits consumed
 * 11:40  the overview is read
 */
async function fixture() {
  const t = await setup();
  at(H10 + 5 * MIN);
  const admin = await signUpAdmin(t);
  const u1 = await signUp(t, "u1");
  const u2 = await signUp(t, "u2");
  const u3 = await signUp(t, "u3");
  at(H10 + 6 * MIN);
  await t.mutation(internal.users.updateUserPlan, { userId: u2.userId, planName: "creator" });
  await t.mutation(internal.users.updateUserPlan, { userId: u3.userId, planName: "studio" });
  at(H10 + 10 * MIN);
  const a = await u1.as.mutation(api.jobs.createJob, { prompt: "a", durationSec: 5 });
  const b = await u1.as.mutation(api.jobs.createJob, { prompt: "b", durationSec: 10 });
  const c = await u1.as.mutation(api.jobs.createJob, { prompt: "c", durationSec: 15 });
  const d = await u2.as.mutation(api.jobs.createJob, { prompt: "d", durationSec: 10 });
  at(H10 + 12 * MIN);
  await setStatus(t, a, "running");
  await setStatus(t, b, "running");
  at(H10 + 13 * MIN);
  await setStatus(t, a, "done");
  at(H10 + 15 * MIN);
  await u1.as.mutation(api.jobs.cancelJob, { jobId: c });
  at(H10 + 20 * MIN);
  await setStatus(t, b, "failed");
  at(H11 + 5 * MIN);
  await setStatus(t, d, "running");
  await u1.as.mutation(api.jobs.createJob, { prompt: "e", durationSec: 5 });
  at(H11 + 10 * MIN);
  await paymentOutcomes(t, u1.userId, [true, true, false, true]);
  at(H11 + 35 * MIN);
  await setStatus(t, d, "done");
  at(H11 + 40 * MIN);
  return { t, admin, u1, u2, u3 };
}

function emptyHour(hour: number) {
  return {
    hour,
    creditsConsumed: 0,
    jobsDone: 0,
    jobsFailed: 0,
    jobsCanceled: 0,
    paymentsSucceeded: 0,
    paymentsFailed: 0,
  };
}

describe("metrics.overview on the fixture", () => {
  test("default window (24 hours): every metric matches the hand-computed value", async () => {
    const { t, admin } = await fixture();
    // As a dashboard asks at 11:40: the current hour, from its own clock.
    const overview = await admin.query(api.metrics.overview, { endHour: H11 });
    const from = H11 - 23 * HOUR_MS;
    expect(overview).toMatchObject({
      hours: 24,
      from,
      to: H11 + HOUR_MS,
      // A (5) settled at 10:13, D (10) at 11:35.
      credits: { consumed: 15, perHour: 15 / 24 },
      // done A, D; failed B; canceled C. Success ratio = done / (done + failed).
      jobs: { done: 2, failed: 1, canceled: 1, successRatio: 2 / 3 },
      durations: {
        // A 3 min, D 85 min: average 44 min. Nearest-rank p95 of 2 samples is the larger one,
        // whose bin (1 h .. 2 h) is capped at the longest duration seen: 85 min.
        queuedToDone: { count: 2, avgMs: 44 * MIN, p95Ms: 85 * MIN },
        // A 1 min, D 30 min: average 15.5 min; p95 is D's bin edge, 30 min exactly.
        runningToDone: { count: 2, avgMs: 15.5 * MIN, p95Ms: 30 * MIN },
      },
      // admin (starter, 10:05), u1 (starter, latest 11:05), u2 (creator), u3 (studio).
      activeUsers: { starter: 2, creator: 1, studio: 1, total: 4 },
      payments: { succeeded: 3, failed: 1, successRatio: 0.75 },
    });
    expect(overview.hourly).toHaveLength(24);
    expect(overview.hourly[0].hour).toBe(from);
    expect(overview.hourly[22]).toEqual({
      ...emptyHour(H10),
      creditsConsumed: 5,
      jobsDone: 1,
      jobsFailed: 1,
      jobsCanceled: 1,
    });
    expect(overview.hourly[23]).toEqual({
      ...emptyHour(H11),
      creditsConsumed: 10,
      jobsDone: 1,
      paymentsSucceeded: 3,
      paymentsFailed: 1,
    });
    expect(overview.hourly.slice(0, 22)).toEqual(
      Array.from({ length: 22 }, (_, i) => emptyHour(from + i * HOUR_MS)),
    );
    await checkInvariants(t);
  });

  test("a one-hour window sees only the current hour", async () => {
    const { admin } = await fixture();
    expect(await admin.query(api.metrics.overview, { hours: 1, endHour: H11 })).toEqual({
      hours: 1,
      from: H11,
      to: H11 + HOUR_MS,
      credits: { consumed: 10, perHour: 10, expired: 0 },
      jobs: { done: 1, failed: 0, canceled: 0, successRatio: 1 },
      // Two of the three successful payments started subscriptions (the third user already had
      // one): gauges of now, whatever the window.
      subscriptions: {
        active: { starter: 0, creator: 1, studio: 1, total: 2 },
        mrr: [{ currency: "GBP", amountMinor: 3100 + 6000 }],
        // Both subscriptions' changes wait for the fold, and are added in.
        pending: 2,
        exact: true,
        renewalsPaid: 0,
        renewalsFailed: 0,
        canceled: 0,
      },
      renewals: {
        paid: { mandate: 0, manual: 0 },
        failed: { mandate: 0, manual: 0 },
        dunningRecoveries: 0,
        churn: { voluntary: 0, involuntary: 0 },
      },
      durations: {
        queuedToDone: { count: 1, avgMs: 85 * MIN, p95Ms: 85 * MIN },
        runningToDone: { count: 1, avgMs: 30 * MIN, p95Ms: 30 * MIN },
      },
      // Only u1 was active in hour 11 (D's transitions are the worker's, not u2's).
      activeUsers: { starter: 1, creator: 0, studio: 0, total: 1 },
      payments: { succeeded: 3, failed: 1, successRatio: 0.75 },
      // Hour 11's changes (u1 active, 4 payment outcomes, D done) wait for the fold, added in.
      rollups: { pending: 6, exact: true },
      hourly: [
        {
          ...emptyHour(H11),
          creditsConsumed: 10,
          jobsDone: 1,
          paymentsSucceeded: 3,
          paymentsFailed: 1,
        },
      ],
    });
  });

  test("the window slides: a day later hour 10 has dropped out", async () => {
    const { admin } = await fixture();
    at(H10 + 24 * HOUR_MS + 30 * MIN);
    const overview = await admin.query(api.metrics.overview, { endHour: H10 + 24 * HOUR_MS });
    expect(overview).toMatchObject({
      from: H11,
      credits: { consumed: 10 },
      jobs: { done: 1, failed: 0, canceled: 0, successRatio: 1 },
      activeUsers: { starter: 1, creator: 0, studio: 0, total: 1 },
      payments: { succeeded: 3, failed: 1 },
    });
    at(H10 + 26 * HOUR_MS);
    expect(await admin.query(api.metrics.overview, { endHour: H10 + 26 * HOUR_MS })).toMatchObject({
      credits: { consumed: 0, perHour: 0 },
      jobs: { done: 0, failed: 0, canceled: 0, successRatio: null },
      durations: {
        queuedToDone: { count: 0, avgMs: null, p95Ms: null },
        runningToDone: { count: 0, avgMs: null, p95Ms: null },
      },
      activeUsers: { total: 0 },
      payments: { succeeded: 0, failed: 0, successRatio: null },
    });
  });

  test("without endHour the window ends at the newest hour with activity (no clock read)", async () => {
    const { t, admin } = await fixture();
    const explicit = await admin.query(api.metrics.overview, { endHour: H11 });
    expect(await admin.query(api.metrics.overview, {})).toEqual(explicit);
    // Hours later, nothing has happened since 11:35: the window still ends at hour 11 and says so
    // (the every-minute fold has added the changes to the buckets: the same figures).
    at(H10 + 5 * HOUR_MS);
    await foldBucketDeltas(t);
    expect(await admin.query(api.metrics.overview, {})).toEqual({
      ...explicit,
      rollups: { pending: 0, exact: true },
    });
    // The first event of a later hour moves it (its bucket is the newest row).
    await paymentOutcomes(t, (await signUp(t, "u4")).userId, [true]);
    expect(await admin.query(api.metrics.overview, {})).toMatchObject({
      from: H10 + 5 * HOUR_MS - 23 * HOUR_MS,
      to: H10 + 6 * HOUR_MS,
      // 11:10's three and the new one.
      payments: { succeeded: 4 },
    });
  });

  test("a window in the future, or before any activity, is all zeros", async () => {
    const { admin } = await fixture();
    for (const endHour of [H10 + 100 * HOUR_MS, H10 - 24 * HOUR_MS]) {
      expect(await admin.query(api.metrics.overview, { endHour })).toMatchObject({
        credits: { consumed: 0 },
        jobs: { done: 0, failed: 0, canceled: 0 },
        activeUsers: { total: 0 },
      });
    }
  });

  test("the largest window (720 hours) still includes everything", async () => {
    const { admin } = await fixture();
    const overview = await admin.query(api.metrics.overview, { hours: 720 });
    expect(overview.hourly).toHaveLength(720);
    expect(overview).toMatchObject({
      credits: { consumed: 15 },
      jobs: { done: 2, failed: 1, canceled: 1 },
      activeUsers: { total: 4 },
    });
  });
});

describe("active users", () => {
  test("each user is counted once, under their latest plan, however often they act", async () => {
    const t = await setup();
    const admin = await signUpAdmin(t);
    const u1 = await signUp(t, "u1");
    for (let i = 0; i < 3; i++) {
      at(H10 + i * HOUR_MS + MIN);
      await u1.as.mutation(api.jobs.createJob, { prompt: `p${i}`, durationSec: 5 });
      // Signing in again in the same hour changes nothing.
      await u1.as.mutation(api.users.getOrCreateUser, {
        clerkId: "u1",
        email: "u1@example.com",
      });
    }
    await t.mutation(internal.users.updateUserPlan, { userId: u1.userId, planName: "studio" });
    // u1 once, under the plan of their latest activity; the admin signed up at 10:00.
    expect((await admin.query(api.metrics.overview, { hours: 3 })).activeUsers).toEqual({
      starter: 1,
      creator: 0,
      studio: 1,
      total: 2,
    });
    expect((await admin.query(api.metrics.overview, { hours: 2 })).activeUsers).toEqual({
      starter: 0,
      creator: 0,
      studio: 1,
      total: 1,
    });
    // Signing in counts as activity: the admin moves to the current hour.
    await admin.mutation(api.users.getOrCreateUser, {
      clerkId: "admin",
      email: "admin@example.com",
    });
    expect((await admin.query(api.metrics.overview, { hours: 1 })).activeUsers).toEqual({
      starter: 1,
      creator: 0,
      studio: 1,
      total: 2,
    });
  });

  test("the buckets hold exactly one count per user marker", async () => {
    const { t } = await fixture();
    await foldBucketDeltas(t);
    const { buckets, users } = await t.run(async (ctx) => ({
      buckets: await ctx.db.query("metricsBuckets").collect(),
      users: await ctx.db.query("users").collect(),
    }));
    for (const plan of ["starter", "creator", "studio"] as const) {
      const counted = buckets.reduce((sum, b) => sum + b.activeUsers[plan], 0);
      expect(counted, plan).toBe(users.filter((u) => u.lastActivePlan === plan).length);
    }
    for (const user of users) {
      const bucket = buckets.find(
        (b) => b.hour === user.lastActiveHour && b.shard === shardOf(user._id),
      );
      expect(bucket?.activeUsers[user.lastActivePlan!]).toBeGreaterThan(0);
    }
  });
});

describe("buckets", () => {
  test("a counted change reads nothing and inserts one delta; the fold writes each bucket once", async () => {
    const t = await setup();
    const cost = await t.run(async (ctx) => {
      const before = await ctx.meta.getTransactionMetrics();
      await recordBucketDelta(ctx, H10, 0, { jobsDone: 1 });
      const after = await ctx.meta.getTransactionMetrics();
      return {
        read: after.documentsRead.used - before.documentsRead.used,
        written: after.documentsWritten.used - before.documentsWritten.used,
      };
    });
    expect(cost).toEqual({ read: 0, written: 1 });
    await t.run(async (ctx) => {
      await recordBucketDelta(ctx, H10, 0, { jobsDone: 1, creditsConsumed: 5 });
      await recordBucketDelta(ctx, H10, 1, { jobsFailed: 1 });
      // A user moving out of an hour whose bucket is gone: nothing to take them out of.
      await recordBucketDelta(ctx, H10 - HOUR_MS, 0, { activeUsers: { starter: -1 } }, false);
    });
    const written = await t.run(async (ctx) => {
      const before = await ctx.meta.getTransactionMetrics();
      const result = await foldBucketDeltasBatch(ctx);
      const after = await ctx.meta.getTransactionMetrics();
      return { result, written: after.documentsWritten.used - before.documentsWritten.used };
    });
    // Two bucket inserts and four delta deletions.
    expect(written).toEqual({ result: { folded: 4, more: false }, written: 2 + 4 });
    const buckets = await t.run(async (ctx) => await ctx.db.query("metricsBuckets").collect());
    expect(
      buckets.map(({ hour, shard, jobsDone, jobsFailed, creditsConsumed }) => ({
        hour,
        shard,
        jobsDone,
        jobsFailed,
        creditsConsumed,
      })),
    ).toEqual([
      { hour: H10, shard: 0, jobsDone: 2, jobsFailed: 0, creditsConsumed: 5 },
      { hour: H10, shard: 1, jobsDone: 0, jobsFailed: 1, creditsConsumed: 0 },
    ]);
    expect(await t.run(async (ctx) => await ctx.db.query("metricsBucketDeltas").collect())).toEqual(
      [],
    );
  });

  test("a backlog folds in bounded batches that reschedule themselves", async () => {
    const t = await setup();
    await t.run(async (ctx) => {
      for (let i = 0; i < FOLD_BATCH + 3; i++) {
        await recordBucketDelta(ctx, H10, i % METRIC_SHARDS, { paymentsSucceeded: 1 });
      }
    });
    expect(await t.mutation(internal.metrics.foldBucketDeltas, {})).toEqual({
      folded: FOLD_BATCH,
      more: true,
    });
    await t.finishAllScheduledFunctions(vi.runAllTimers);
    const buckets = await t.run(async (ctx) => await ctx.db.query("metricsBuckets").collect());
    expect(buckets).toHaveLength(METRIC_SHARDS);
    expect(buckets.reduce((sum, b) => sum + b.paymentsSucceeded, 0)).toBe(FOLD_BATCH + 3);
  });

  test("writes are spread over shards, one row per (hour, shard)", async () => {
    const t = await setup();
    const { as } = await signUp(t, "u1");
    const ids: Id<"jobs">[] = [];
    for (let i = 0; i < 16; i++) {
      ids.push(await as.mutation(api.jobs.createJob, { prompt: `p${i}`, durationSec: 5 }));
    }
    for (const id of ids) {
      await as.mutation(api.jobs.cancelJob, { jobId: id });
    }
    await foldBucketDeltas(t);
    const buckets = await t.run(async (ctx) => await ctx.db.query("metricsBuckets").collect());
    const keys = buckets.map((b) => `${b.hour}/${b.shard}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(buckets.every((b) => b.hour === H10 && b.shard >= 0 && b.shard < METRIC_SHARDS)).toBe(
      true,
    );
    const expectedShards = new Set(ids.map((id) => shardOf(id)));
    expect(expectedShards.size).toBeGreaterThan(1);
    const canceledByShard = new Map(buckets.map((b) => [b.shard, b.jobsCanceled]));
    for (const shard of expectedShards) {
      expect(canceledByShard.get(shard)).toBe(ids.filter((id) => shardOf(id) === shard).length);
    }
    expect(buckets.reduce((sum, b) => sum + b.jobsCanceled, 0)).toBe(16);
  });

  test("pruneOldBuckets deletes only rows past the retention, in batches", async () => {
    const t = await setup();
    const cutoff = H10 - RETENTION_HOURS * HOUR_MS;
    const old = PRUNE_BATCH_SIZE + 20;
    await t.run(async (ctx) => {
      for (let i = 0; i < old + 5; i++) {
        const hour =
          i < old ? cutoff - (1 + Math.floor(i / METRIC_SHARDS)) * HOUR_MS : cutoff + i * HOUR_MS;
        await ctx.db.insert("metricsBuckets", {
          hour,
          shard: i % METRIC_SHARDS,
          creditsConsumed: 0,
          jobsDone: 0,
          jobsFailed: 0,
          jobsCanceled: 0,
          queuedToDone: { count: 0, sumMs: 0, maxMs: 0, bins: [] },
          runningToDone: { count: 0, sumMs: 0, maxMs: 0, bins: [] },
          activeUsers: { starter: 0, creator: 0, studio: 0 },
          paymentsSucceeded: 0,
          paymentsFailed: 0,
        });
      }
    });
    expect(await t.mutation(internal.metrics.pruneOldBuckets, {})).toEqual({
      deleted: PRUNE_BATCH_SIZE,
      more: true,
    });
    await t.finishAllScheduledFunctions(vi.runAllTimers);
    const left = await t.run(async (ctx) => await ctx.db.query("metricsBuckets").collect());
    expect(left).toHaveLength(5);
    expect(left.every((b) => b.hour >= cutoff)).toBe(true);
  });

  test("activity after the old bucket was pruned counts the user once, in the new hour", async () => {
    const t = await setup();
    const admin = await signUpAdmin(t);
    await signUp(t, "u1");
    at(H10 + (RETENTION_HOURS + 2) * HOUR_MS);
    await t.mutation(internal.metrics.pruneOldBuckets, {});
    expect(await t.run(async (ctx) => await ctx.db.query("metricsBuckets").collect())).toEqual([]);
    await signUp(t, "u1");
    expect((await admin.query(api.metrics.overview, { hours: 1 })).activeUsers.total).toBe(1);
  });
});

describe("duration histogram", () => {
  test("bins are inclusive of their upper edge; longer than the last edge overflows", () => {
    expect(durationBin(0)).toBe(0);
    expect(durationBin(1000)).toBe(0);
    expect(durationBin(1001)).toBe(1);
    expect(durationBin(30 * 60 * 1000)).toBe(DURATION_BIN_UPPER_MS.indexOf(1800 * 1000));
    expect(durationBin(10 * 86400 * 1000)).toBe(DURATION_BIN_UPPER_MS.length);
  });

  test("p95 is the upper edge of the bin holding the nearest-rank 95th percentile", () => {
    const stats = (samples: number[]) => {
      const bins = new Array<number>(DURATION_BIN_UPPER_MS.length + 1).fill(0);
      for (const ms of samples) bins[durationBin(ms)] += 1;
      return {
        count: samples.length,
        sumMs: samples.reduce((a, b) => a + b, 0),
        maxMs: Math.max(...samples),
        bins,
      };
    };
    // 19 x 25 s and 1 x 10 min: rank ceil(0.95 * 20) = 19 falls in the (20 s, 30 s] bin.
    expect(p95FromHistogram(stats([...Array(19).fill(25_000), 600_000]))).toBe(30_000);
    // 18 x 25 s and 2 x 10 min: rank 19 is a 10-minute job; its bin edge is 600 s.
    expect(p95FromHistogram(stats([...Array(18).fill(25_000), 600_000, 600_000]))).toBe(600_000);
    // Capped at the longest duration seen; the overflow bin reports it.
    expect(p95FromHistogram(stats([50_000]))).toBe(50_000);
    expect(p95FromHistogram(stats([3 * 86400 * 1000]))).toBe(3 * 86400 * 1000);
    expect(p95FromHistogram(stats([]))).toBeNull();
  });
});

describe("access control and arguments", () => {
  test("no identity UNAUTHENTICATED, no user row NOT_FOUND, non-admin and revoked admin FORBIDDEN", async () => {
    const t = await setup();
    await expectCode(t.query(api.metrics.overview, {}), "UNAUTHENTICATED");
    await expectCode(
      t.withIdentity(identityFor("nobody")).query(api.metrics.overview, {}),
      "NOT_FOUND",
    );
    const { as, userId } = await signUp(t, "u1");
    await expectCode(as.query(api.metrics.overview, {}), "FORBIDDEN");
    // Refused before the arguments are looked at.
    await expectCode(as.query(api.metrics.overview, { hours: 0 }), "FORBIDDEN");
    await t.mutation(internal.users.setRole, { userId, role: "admin" });
    expect((await as.query(api.metrics.overview, {})).hours).toBe(24);
    await t.mutation(internal.users.setRole, { userId, role: null });
    await expectCode(as.query(api.metrics.overview, {}), "FORBIDDEN");
  });

  test.each([0, -1, 721, 1.5, Number.NaN, Number.POSITIVE_INFINITY])(
    "hours %s is INVALID_ARGUMENT",
    async (hours) => {
      const t = await setup();
      const admin = await signUpAdmin(t);
      await expectCode(admin.query(api.metrics.overview, { hours }), "INVALID_ARGUMENT");
    },
  );

  test.each([-HOUR_MS, 1, H11 + 1, H11 + 0.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60])(
    "endHour %s is INVALID_ARGUMENT",
    async (endHour) => {
      const t = await setup();
      const admin = await signUpAdmin(t);
      await expectCode(admin.query(api.metrics.overview, { endHour }), "INVALID_ARGUMENT");
    },
  );

  test("with no rollup rows at all, the window without endHour ends at the epoch hour", async () => {
    const t = await setup();
    const admin = await signUpAdmin(t);
    await t.run(async (ctx) => {
      for (const bucket of await ctx.db.query("metricsBuckets").collect()) {
        await ctx.db.delete("metricsBuckets", bucket._id);
      }
      for (const delta of await ctx.db.query("metricsBucketDeltas").collect()) {
        await ctx.db.delete("metricsBucketDeltas", delta._id);
      }
    });
    expect(await admin.query(api.metrics.overview, { hours: 2 })).toMatchObject({
      from: -HOUR_MS,
      to: HOUR_MS,
      activeUsers: { total: 0 },
    });
  });

  test("hours 1 and 720 are accepted", async () => {
    const t = await setup();
    const admin = await signUpAdmin(t);
    expect((await admin.query(api.metrics.overview, { hours: 1 })).hourly).toHaveLength(1);
    expect((await admin.query(api.metrics.overview, { hours: 720 })).hourly).toHaveLength(720);
  });
});
