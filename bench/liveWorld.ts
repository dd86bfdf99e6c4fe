import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import { MAX_PAGE_SIZE } from "../convex/lib/pagination";
import { HOUR_MS, METRIC_SHARDS, hourStart } from "../convex/model/metricsBuckets";
import type { Client } from "./measure";
import { liveCost, subscribe, type LiveCost, type Subscription } from "./readSets";

/**
 * The live-query cost scenario: Q users, each with one queued job and the live
 * queries the front end holds open (`getJob` of that job, `getCredits`, the first page of
 * `listUserJobs`, `listLedger` and `listPayments`), plus a few admins' `metrics.overview`
 * dashboards. Then the writes that most often touch those queries, one after the other; for
 * each, which subscriptions it invalidates and what their re-runs read (see bench/readSets.ts).
 * Used by the benchmark (Q = 1,000 and 10,000) and by tests/liveQueryCost.test.ts (small Q).
 */

/** The live queries, in report order. */
export const LIVE_QUERIES = [
  "jobs.getJob",
  "credits.getCredits",
  "jobs.listUserJobs",
  "credits.listLedger",
  "payments.listPayments",
  "metrics.overview",
  "metrics.overview (720 h)",
] as const;
export type LiveQuery = (typeof LIVE_QUERIES)[number];

/** Admins with a dashboard open. */
export const DASHBOARDS = 3;
/** Users per seeding transaction (6 writes each: under the 16,000-documents-written limit). */
const CHUNK = 2500;
const WORKER = "gpu-live-1";

function identity(clerkId: string) {
  return {
    subject: clerkId,
    issuer: "https://clerk.test",
    tokenIdentifier: `https://clerk.test|${clerkId}`,
  };
}

type LiveUser = { clerkId: string; userId: Id<"users">; jobId: Id<"jobs">; as: Client };

export type LiveWorld = {
  t: Client;
  q: number;
  users: LiveUser[];
  subscriptions: Array<{ query: LiveQuery; subscription: Subscription }>;
};

/**
 * Seeds Q users with a lot, a queued job holding 10 of its credits, their ledger rows and a
 * payment each (the jobs queued 1 ms apart, user 0's first), a day of metrics buckets, and
 * DASHBOARDS admins; then subscribes every live query once (recording its read set). Every user was already active this hour.
 */
export async function liveWorld(t: Client, q: number, now: number): Promise<LiveWorld> {
  await t.mutation(internal.plans.seedPlans, {});
  const current = hourStart(now);
  await t.run(async (ctx) => {
    for (let i = 0; i < 24 * METRIC_SHARDS; i++) {
      await ctx.db.insert("metricsBuckets", {
        hour: current - Math.floor(i / METRIC_SHARDS) * HOUR_MS,
        shard: i % METRIC_SHARDS,
        creditsConsumed: 0,
        jobsDone: 0,
        jobsFailed: 0,
        jobsCanceled: 0,
        queuedToDone: { count: 0, sumMs: 0, maxMs: 0, bins: new Array<number>(26).fill(0) },
        runningToDone: { count: 0, sumMs: 0, maxMs: 0, bins: new Array<number>(26).fill(0) },
        activeUsers: { starter: 0, creator: 0, studio: 0 },
        paymentsSucceeded: 0,
        paymentsFailed: 0,
      });
    }
  });
  const users: LiveUser[] = [];
  for (let start = 0; start < q; start += CHUNK) {
    const end = Math.min(q, start + CHUNK);
    users.push(
      ...(
        await t.run(async (ctx) => {
          const made: Array<Omit<LiveUser, "as">> = [];
          for (let i = start; i < end; i++) {
            const clerkId = `live_${i}`;
            const userId = await ctx.db.insert("users", {
              clerkId,
              email: `${clerkId}@example.com`,
              plan: "starter",
              credits: 100,
              reservedCredits: 10,
              createdAt: now - HOUR_MS,
              lastActiveHour: current,
              lastActivePlan: "starter",
            });
            // Its credits in one never-expiring operator's lot, the job holding 10 of them.
            const lotId = await ctx.db.insert("creditLots", {
              userId,
              source: "adjustment",
              sourceKey: `live:${clerkId}`,
              granted: 110,
              remaining: 110,
              held: 10,
              status: "active",
              closed: false,
              createdAt: now - HOUR_MS,
            });
            await ctx.db.insert("ledger", {
              userId,
              delta: 110,
              balanceAfter: 110,
              kind: "adjustment",
              lotId,
              createdAt: now - HOUR_MS,
            });
            const jobId = await ctx.db.insert("jobs", {
              userId,
              prompt: `live job ${i}`,
              durationSec: 10,
              creditsUsed: 10,
              status: "queued",
              creditStatus: "held",
              allocations: [{ lotId, credits: 10 }],
              createdAt: now - q + i,
            });
            await ctx.db.insert("ledger", {
              userId,
              delta: -10,
              reservedDelta: 10,
              balanceAfter: 100,
              kind: "reserve",
              jobId,
              lotId,
              createdAt: now - q + i,
            });
            await ctx.db.insert("payments", {
              userId,
              trueLayerTxnId: `tl_live_${i}`,
              amount: 3100,
              creditsAdded: 0,
              creditsPurchased: 250,
              timestamp: now - q + i,
              status: "pending",
              planName: "creator",
              currency: "GBP",
            });
            made.push({ clerkId, userId, jobId });
          }
          return made;
        })
      ).map((user) => ({ ...user, as: t.withIdentity(identity(user.clerkId)) })),
    );
  }
  // The hours before the current one are folded into their day row, as the hourly cron keeps them.
  for (;;) {
    const fold = await t.mutation(internal.metrics.foldHours, {});
    if (!fold.more) break;
  }
  const admins: Client[] = [];
  for (let i = 0; i < DASHBOARDS; i++) {
    const clerkId = `live_admin_${i}`;
    const as = t.withIdentity(identity(clerkId));
    const admin = await as.mutation(api.users.getOrCreateUser, {
      clerkId,
      email: `${clerkId}@example.com`,
    });
    await t.mutation(internal.users.setRole, { userId: admin._id, role: "admin" });
    admins.push(as);
  }

  const page = { paginationOpts: { numItems: MAX_PAGE_SIZE, cursor: null } };
  const subscriptions: LiveWorld["subscriptions"] = [];
  const add = async (query: LiveQuery, run: () => Promise<unknown>) => {
    subscriptions.push({ query, subscription: await subscribe(run) });
  };
  for (const { as, jobId } of users) {
    await add("jobs.getJob", () => as.query(api.jobs.getJob, { jobId }));
    await add("credits.getCredits", () => as.query(api.credits.getCredits, {}));
    await add("jobs.listUserJobs", () => as.query(api.jobs.listUserJobs, page));
    await add("credits.listLedger", () => as.query(api.credits.listLedger, page));
    await add("payments.listPayments", () => as.query(api.payments.listPayments, page));
  }
  for (const as of admins) {
    // A dashboard names the current hour (see metrics.overview): the last day, and a month.
    await add("metrics.overview", () =>
      as.query(api.metrics.overview, { hours: 24, endHour: current }),
    );
    await add("metrics.overview (720 h)", () =>
      as.query(api.metrics.overview, { hours: 720, endHour: current }),
    );
  }
  return { t, q, users, subscriptions };
}

export type LiveWrite = {
  name: string;
  run: (world: LiveWorld) => Promise<unknown>;
};

/**
 * The writes, in the order they run (each sees the state the previous ones left): the
 * commonest writes that reach the live queries above.
 */
export const LIVE_WRITES: LiveWrite[] = [
  {
    // A user who is already active this hour queues another job: goes to the queue's tail.
    name: "jobs.createJob (another user)",
    run: async ({ users, q }) =>
      await users[q - 1].as.mutation(api.jobs.createJob, { prompt: "one more", durationSec: 5 }),
  },
  {
    // A worker claims the head of the queue (user 0's job).
    name: "worker.claimJob",
    run: async ({ t }) => {
      const job = await t.mutation(internal.worker.claimJob, { workerId: WORKER });
      if (job === null) throw new Error("live: the queue is empty");
      return job;
    },
  },
  {
    name: "worker.heartbeat",
    run: async ({ t, users }) =>
      await t.mutation(internal.worker.heartbeat, {
        jobId: users[0].jobId,
        workerId: WORKER,
        progress: 50,
      }),
  },
  {
    // The claimed job finishes: settles the credits, counts the outcome in the metrics.
    name: "worker.completeJob",
    run: async ({ t, users }) =>
      await t.mutation(internal.worker.completeJob, {
        jobId: users[0].jobId,
        workerId: WORKER,
        r2Url: "https://videos.example.com/live.mp4",
      }),
  },
  {
    // A user in the middle of the queue cancels: the jobs behind it move up one place.
    name: "jobs.cancelJob (mid-queue)",
    run: async ({ users, q }) => {
      const { as, jobId } = users[Math.floor(q / 2)];
      return await as.mutation(api.jobs.cancelJob, { jobId });
    },
  },
  {
    // TrueLayer reports a user's payment executed: credits granted, outcome counted.
    name: "payments.applyTrueLayerEvent (payment_executed)",
    run: async ({ t, q }) => {
      const result = await t.mutation(internal.payments.applyTrueLayerEvent, {
        eventId: "evt_live_1",
        type: "payment_executed",
        trueLayerPaymentId: `tl_live_${Math.floor(q / 2) + 1}`,
      });
      if (result.outcome !== "applied") throw new Error(`live: ${JSON.stringify(result)}`);
      return result;
    },
  },
];

export type LiveResult = {
  write: string;
  documentsWritten: number;
  /** Per live query: subscriptions held, invalidated, and their re-runs' documents read. */
  byQuery: Record<LiveQuery, LiveCost>;
  total: { invalidated: number; rerunReads: number };
};

/** Runs every write of LIVE_WRITES against the world and measures each. */
export async function measureLiveWrites(world: LiveWorld): Promise<LiveResult[]> {
  const results: LiveResult[] = [];
  for (const write of LIVE_WRITES) {
    const all = world.subscriptions.map((s) => s.subscription);
    const { byWrite, documentsWritten } = await liveCostByQuery(world, () => write.run(world), all);
    results.push({
      write: write.name,
      documentsWritten,
      byQuery: byWrite,
      total: {
        invalidated: LIVE_QUERIES.reduce((n, query) => n + byWrite[query].invalidated, 0),
        rerunReads: LIVE_QUERIES.reduce((n, query) => n + byWrite[query].rerunReads, 0),
      },
    });
  }
  return results;
}

async function liveCostByQuery(
  world: LiveWorld,
  write: () => Promise<unknown>,
  all: Subscription[],
): Promise<{ byWrite: Record<LiveQuery, LiveCost>; documentsWritten: number }> {
  // One write, then each query kind's subscriptions checked against its write set.
  const invalidatedBy = new Map<Subscription, boolean>();
  const cost = await liveCost(all, write, (subscription, invalidated) => {
    invalidatedBy.set(subscription, invalidated);
  });
  const byWrite = {} as Record<LiveQuery, LiveCost>;
  for (const query of LIVE_QUERIES) {
    const mine = world.subscriptions.filter((s) => s.query === query).map((s) => s.subscription);
    byWrite[query] = {
      subscriptions: mine.length,
      documentsWritten: cost.documentsWritten,
      invalidated: mine.filter((s) => invalidatedBy.get(s) === true).length,
      rerunReads: mine
        .filter((s) => invalidatedBy.get(s) === true)
        .reduce((n, s) => n + s.reads.documentsRead, 0),
    };
  }
  return { byWrite, documentsWritten: cost.documentsWritten };
}
