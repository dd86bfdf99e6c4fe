/// <reference types="vite/client" />
import { convexTest } from "convex-test";
import { api, internal } from "../convex/_generated/api";
import type { Doc, Id } from "../convex/_generated/dataModel";
import schema from "../convex/schema";
import {
  DURATION_BIN_UPPER_MS,
  HOUR_MS,
  METRIC_SHARDS,
  RETENTION_HOURS,
  hourStart,
} from "../convex/model/metrics";
import type { Client } from "./measure";

const modules = import.meta.glob("../convex/**/*.ts");

/** Rows inserted per seeding transaction (well under the 16,000-documents-written limit). */
const CHUNK = 4000;
const PLANS = ["starter", "creator", "studio"] as const;

export type BenchEnv = {
  t: Client;
  n: number;
  now: number;
  /** Owns the N-job backlog, N ledger rows, and is the caller of the per-user functions. */
  heavy: { as: Client; userId: Id<"users"> };
  admin: { as: Client; userId: Id<"users"> };
  /** A fresh Clerk id and a client signed in as it (no user row yet). */
  stranger: () => { clerkId: string; as: Client };
  /** A client signed in as `clerkId` (e.g. a seeded `filler_<i>` user). */
  as: (clerkId: string) => Client;
  /** What the seed put in, for the report. */
  rows: Record<string, number>;
};

function identity(clerkId: string) {
  return {
    subject: clerkId,
    issuer: "https://clerk.test",
    tokenIdentifier: `https://clerk.test|${clerkId}`,
  };
}

type Insertable = {
  [T in keyof typeof schema.tables]: { table: T; doc: Omit<Doc<T>, "_id" | "_creationTime"> };
}[keyof typeof schema.tables];

/** Inserts `count` rows made by `make(i)`, CHUNK rows per transaction. */
async function insertMany(t: Client, count: number, make: (i: number) => Insertable) {
  for (let start = 0; start < count; start += CHUNK) {
    const end = Math.min(count, start + CHUNK);
    await t.run(async (ctx) => {
      for (let i = start; i < end; i++) {
        const { table, doc } = make(i);
        await ctx.db.insert(table, doc as never);
      }
    });
  }
}

function fullBucket(hour: number, shard: number): Insertable {
  const bins = DURATION_BIN_UPPER_MS.map(() => 1).concat([0]);
  const durations = { count: bins.length - 1, sumMs: 1_000_000, maxMs: 86_400_000, bins };
  return {
    table: "metricsBuckets",
    doc: {
      hour,
      shard,
      creditsConsumed: 120,
      jobsDone: 12,
      jobsFailed: 1,
      jobsCanceled: 2,
      queuedToDone: durations,
      runningToDone: durations,
      activeUsers: { starter: 3, creator: 2, studio: 1 },
      paymentsSucceeded: 2,
      paymentsFailed: 1,
    },
  };
}

/**
 * A deployment with N rows in each large table:
 * - N users (besides the admin and the heavy user), last active some hours ago;
 * - N done jobs of the heavy user whose video expired an hour ago: the expiry cron's backlog;
 * - N / 10 queued jobs of other users, all ahead of any new job in the queue;
 * - N ledger rows of the heavy user;
 * - a month of metrics buckets (every hour x shard of the retention period, as a busy
 *   deployment has), plus N buckets past the retention: the prune cron's backlog.
 */
export async function seed(n: number, now: number): Promise<BenchEnv> {
  const t = convexTest({ schema, modules, transactionLimits: true });
  await t.mutation(internal.plans.seedPlans, {});
  // Buckets first: the sign-ups below then add to existing rows, as in a live deployment.
  const current = hourStart(now);
  const windowBuckets = RETENTION_HOURS * METRIC_SHARDS;
  await insertMany(t, windowBuckets, (i) =>
    fullBucket(current - Math.floor(i / METRIC_SHARDS) * HOUR_MS, i % METRIC_SHARDS),
  );
  const cutoff = current - RETENTION_HOURS * HOUR_MS;
  await insertMany(t, n, (i) =>
    fullBucket(cutoff - (1 + Math.floor(i / METRIC_SHARDS)) * HOUR_MS, i % METRIC_SHARDS),
  );

  const signUp = async (clerkId: string) => {
    const as = t.withIdentity(identity(clerkId));
    const user = await as.mutation(api.users.getOrCreateUser, {
      clerkId,
      email: `${clerkId}@example.com`,
    });
    return { as, userId: user._id };
  };
  const admin = await signUp("admin");
  await t.mutation(internal.users.setRole, { userId: admin.userId, role: "admin" });
  const heavy = await signUp("heavy");
  // Enough balance for every job the cases create.
  await t.run(async (ctx) => {
    await ctx.db.patch("users", heavy.userId, { credits: 1_000_000 });
  });

  const day = 24 * HOUR_MS;
  await insertMany(t, n, (i) => ({
    table: "users",
    doc: {
      clerkId: `filler_${i}`,
      email: `filler_${i}@example.com`,
      plan: PLANS[i % 3],
      credits: 80,
      createdAt: now - 30 * day + i,
      // Last seen some hours ago (inside the metrics window): signing in now moves their count.
      lastActiveHour: current - (1 + (i % 700)) * HOUR_MS,
      lastActivePlan: PLANS[i % 3],
    },
  }));
  const otherUser = await t.run(async (ctx) => {
    const filler = await ctx.db
      .query("users")
      .withIndex("by_clerkId", (q) => q.eq("clerkId", "filler_0"))
      .unique();
    return filler?._id ?? admin.userId;
  });
  await insertMany(t, n, (i) => ({
    table: "jobs",
    doc: {
      userId: heavy.userId,
      prompt: `seeded job ${i}`,
      durationSec: 5,
      creditsUsed: 5,
      r2Url: `https://videos.example.com/${i}.mp4`,
      status: "done",
      creditStatus: "settled",
      createdAt: now - 3 * day + i,
      startedAt: now - 3 * day + i + 1000,
      finishedAt: now - 3 * day + i + 60_000,
      expiresAt: now - HOUR_MS - n + i,
    },
  }));
  const queued = Math.floor(n / 10);
  await insertMany(t, queued, (i) => ({
    table: "jobs",
    doc: {
      userId: otherUser,
      prompt: `queued job ${i}`,
      durationSec: 10,
      creditsUsed: 10,
      status: "queued",
      creditStatus: "held",
      createdAt: now - day + i,
    },
  }));
  await insertMany(t, n, (i) => ({
    table: "ledger",
    doc: {
      userId: heavy.userId,
      delta: 0,
      balanceAfter: 1_000_000,
      kind: "adjustment",
      note: `seeded row ${i}`,
      createdAt: now - 2 * day + i,
    },
  }));
  let strangers = 0;
  return {
    t,
    n,
    now,
    heavy,
    admin,
    as: (clerkId) => t.withIdentity(identity(clerkId)),
    stranger: () => {
      const clerkId = `stranger_${++strangers}`;
      return { clerkId, as: t.withIdentity(identity(clerkId)) };
    },
    rows: {
      users: n + 2,
      jobs: n + queued,
      ledger: n + 2,
      metricsBuckets: windowBuckets + n,
    },
  };
}
