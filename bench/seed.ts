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
} from "../convex/model/metricsBuckets";
import { DEFAULT_WORKER_CONFIG } from "../convex/model/worker";
import type { Client } from "./measure";

const modules = import.meta.glob("../convex/**/*.ts");

/** Rows inserted per seeding transaction (well under the 16,000-documents-written limit). */
const CHUNK = 4000;
const PLANS = ["starter", "creator", "studio"] as const;
const DAY_MS = 24 * HOUR_MS;
/** The heavy user's balance: enough for every job the cases create. */
const HEAVY_CREDITS = 1_000_000;

export type BenchEnv = {
  t: Client;
  n: number;
  now: number;
  /**
   * Owns (main deployment) the expiry backlog's N jobs, N ledger rows and N payments, and is
   * the caller of the per-user functions.
   */
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
 * A fresh deployment: the plans, a month of metrics buckets (every hour x shard of the
 * retention period, as a busy deployment has), an admin and the heavy user. `rows` counts what
 * it holds; the seeds below add their tables' rows.
 */
async function newDeployment(n: number, now: number) {
  const t = convexTest({ schema, modules, transactionLimits: true });
  await t.mutation(internal.plans.seedPlans, {});
  const windowBuckets = RETENTION_HOURS * METRIC_SHARDS;
  await insertMany(t, windowBuckets, (i) =>
    fullBucket(hourStart(now) - Math.floor(i / METRIC_SHARDS) * HOUR_MS, i % METRIC_SHARDS),
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
  // Enough balance for every job the cases create: an operator's adjustment on top of the
  // sign-up grant, so the balance stays the sum of the heavy user's ledger.
  await t.run(async (ctx) => {
    const user = (await ctx.db.get("users", heavy.userId))!;
    await ctx.db.patch("users", heavy.userId, { credits: HEAVY_CREDITS });
    await ctx.db.insert("ledger", {
      userId: heavy.userId,
      delta: HEAVY_CREDITS - user.credits,
      balanceAfter: HEAVY_CREDITS,
      kind: "adjustment",
      note: "bench seed: balance for the cases' jobs",
      createdAt: now,
    });
  });
  let strangers = 0;
  const env: BenchEnv = {
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
    rows: { plans: 3, users: 2, ledger: 3, metricsBuckets: windowBuckets },
  };
  return env;
}

/** Adds `count` rows of `table` to the deployment's row counts. */
function counted(env: BenchEnv, table: string, count: number) {
  env.rows[table] = (env.rows[table] ?? 0) + count;
}

/** Job owners for the sweep deployments: refunds spread over this many users. */
const OWNERS = 100;

async function seedOwners(env: BenchEnv): Promise<Array<Id<"users">>> {
  const owners: Array<Id<"users">> = [];
  await env.t.run(async (ctx) => {
    for (let i = 0; i < OWNERS; i++) {
      owners.push(
        await ctx.db.insert("users", {
          clerkId: `owner_${i}`,
          email: `owner_${i}@example.com`,
          plan: PLANS[i % 3],
          credits: 80,
          createdAt: env.now - 30 * DAY_MS,
        }),
      );
    }
  });
  counted(env, "users", OWNERS);
  return owners;
}

type JobDoc = Omit<Doc<"jobs">, "_id" | "_creationTime">;
/** `count` jobs made by `make(i)`. */
type JobGroup = { count: number; make: (i: number) => JobDoc };

/**
 * Inserts the groups' jobs (in order), all of them held, as `createJob` leaves them: each job
 * with its `reserve` ledger row (its price moved from available into reserved credits, at the
 * job's `createdAt`). Each owner's cached balance then equals its ledger columns, as
 * `applyCreditChange` keeps it: one `adjustment` row at the user's `createdAt` (before any job)
 * brings in the user's seeded available credits plus everything its jobs hold, the reserves take
 * the prices out, and `reservedCredits` is set to the sum of its held jobs' prices. The owners
 * must exist, with no ledger rows or held jobs yet. Two passes over `make` (one to total the
 * holds, one to insert), the second CHUNK writes per transaction.
 */
async function insertHeldJobs(env: BenchEnv, groups: JobGroup[]) {
  const { t } = env;
  // Pass 1: each owner's jobs, in the order its ledger index lists them (createdAt, then
  // insertion), so balanceAfter runs down the way a replay of its ledger reads.
  const byUser = new Map<Id<"users">, Array<{ at: number; seq: number; price: number }>>();
  let seq = 0;
  for (const { count, make } of groups) {
    for (let i = 0; i < count; i++) {
      const job = make(i);
      if (job.creditStatus !== "held") throw new Error("bench: insertHeldJobs takes held jobs");
      const jobs = byUser.get(job.userId) ?? [];
      jobs.push({ at: job.createdAt, seq: seq++, price: job.creditsUsed });
      byUser.set(job.userId, jobs);
    }
  }
  const balanceAfter = new Array<number>(seq);
  const opening = await t.run(async (ctx) => {
    const rows: Array<{ userId: Id<"users">; credits: number; reserved: number; at: number }> = [];
    for (const [userId, jobs] of byUser) {
      const user = await ctx.db.get("users", userId);
      if (user === null || (user.reservedCredits ?? 0) !== 0) {
        throw new Error("bench: a held job's owner must exist and hold nothing yet");
      }
      const reserved = jobs.reduce((total, job) => total + job.price, 0);
      let balance = user.credits + reserved;
      rows.push({ userId, credits: balance, reserved, at: user.createdAt });
      jobs.sort((a, b) => a.at - b.at || a.seq - b.seq);
      for (const job of jobs) {
        balance -= job.price;
        balanceAfter[job.seq] = balance;
      }
    }
    for (const { userId, credits, reserved, at } of rows) {
      await ctx.db.insert("ledger", {
        userId,
        delta: credits,
        balanceAfter: credits,
        kind: "adjustment",
        note: "bench seed: opening balance (available credits and the seeded jobs' holds)",
        createdAt: at,
      });
      await ctx.db.patch("users", userId, { reservedCredits: reserved });
    }
    return rows.length;
  });
  // Pass 2: each job and its reserve row.
  seq = 0;
  for (const { count, make } of groups) {
    for (let start = 0; start < count; start += CHUNK / 2) {
      const end = Math.min(count, start + CHUNK / 2);
      const first = seq;
      await t.run(async (ctx) => {
        for (let i = start, s = first; i < end; i++, s++) {
          const job = make(i);
          const jobId = await ctx.db.insert("jobs", job);
          await ctx.db.insert("ledger", {
            userId: job.userId,
            delta: -job.creditsUsed,
            balanceAfter: balanceAfter[s],
            reservedDelta: job.creditsUsed,
            kind: "reserve",
            jobId,
            createdAt: job.createdAt,
          });
        }
      });
      seq += end - start;
    }
  }
  counted(env, "jobs", seq);
  counted(env, "ledger", opening + seq);
}

/**
 * The main deployment, where every call case and the expiry and prune crons run. Besides
 * `newDeployment`'s rows, N rows in each large table:
 * - N users (besides the admin and the heavy user), last active some hours ago;
 * - N done jobs of the heavy user whose video expired an hour ago: the expiry cron's backlog;
 * - N queued jobs of another user, all ahead of any new job: the worker's N-deep queue (each
 *   holding its price, with its reserve row: N + 1 more ledger rows, see insertHeldJobs);
 * - N ledger rows and N payments of the heavy user (executed, settled, failed and pending);
 * - N processed webhook events (TrueLayer and Clerk), for the replay checks;
 * - N metrics buckets past the retention: the prune cron's backlog.
 */
export async function seed(n: number, now: number): Promise<BenchEnv> {
  const env = await newDeployment(n, now);
  const { t, heavy, admin } = env;
  const current = hourStart(now);
  const cutoff = current - RETENTION_HOURS * HOUR_MS;
  await insertMany(t, n, (i) =>
    fullBucket(cutoff - (1 + Math.floor(i / METRIC_SHARDS)) * HOUR_MS, i % METRIC_SHARDS),
  );
  counted(env, "metricsBuckets", n);

  await insertMany(t, n, (i) => ({
    table: "users",
    doc: {
      clerkId: `filler_${i}`,
      email: `filler_${i}@example.com`,
      plan: PLANS[i % 3],
      credits: 80,
      createdAt: now - 30 * DAY_MS + i,
      // Last seen some hours ago (inside the metrics window): signing in now moves their count.
      lastActiveHour: current - (1 + (i % 700)) * HOUR_MS,
      lastActivePlan: PLANS[i % 3],
    },
  }));
  counted(env, "users", n);
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
      createdAt: now - 3 * DAY_MS + i,
      startedAt: now - 3 * DAY_MS + i + 1000,
      finishedAt: now - 3 * DAY_MS + i + 60_000,
      expiresAt: now - HOUR_MS - n + i,
    },
  }));
  counted(env, "jobs", n);
  // The queue workers claim from: N queued jobs, oldest first (all created within the queue
  // timeout: the queue-timeout sweep drains a backlog of its own, see seedQueueBacklog), each
  // holding its price (the worker cases settle and release some).
  await insertHeldJobs(env, [
    {
      count: n,
      make: (i) => ({
        userId: otherUser,
        prompt: `queued job ${i}`,
        durationSec: 10,
        creditsUsed: 10,
        status: "queued",
        creditStatus: "held",
        createdAt: now - DAY_MS / 2 + i,
      }),
    },
  ]);
  await insertMany(t, n, (i) => ({
    table: "ledger",
    doc: {
      userId: heavy.userId,
      delta: 0,
      balanceAfter: HEAVY_CREDITS,
      kind: "adjustment",
      note: `seeded row ${i}`,
      createdAt: now - 2 * DAY_MS + i,
    },
  }));
  counted(env, "ledger", n);
  const statuses = ["executed", "settled", "failed", "pending"] as const;
  await insertMany(t, n, (i) => {
    const status = statuses[i % statuses.length];
    const succeeded = status === "executed" || status === "settled";
    return {
      table: "payments",
      doc: {
        userId: heavy.userId,
        trueLayerTxnId: `tl_seeded_${i}`,
        amount: 3100,
        creditsAdded: succeeded ? 250 : 0,
        creditsPurchased: 250,
        timestamp: now - 20 * DAY_MS + i,
        status,
        planName: "creator",
        currency: "GBP",
        ...(succeeded ? { succeededAt: now - 20 * DAY_MS + i + 1000 } : {}),
        ...(status === "failed" ? { failureReason: "insufficient_funds" } : {}),
      },
    };
  });
  counted(env, "payments", n);
  await insertMany(t, n, (i) => ({
    table: "webhookEvents",
    doc: {
      provider: i % 2 === 0 ? "truelayer" : "clerk",
      eventId: `evt_seeded_${i}`,
      type: i % 2 === 0 ? "payment_executed" : "user.created",
      receivedAt: now - 20 * DAY_MS + i,
    },
  }));
  counted(env, "webhookEvents", n);
  return env;
}

/**
 * The lease sweep's deployment: N running jobs whose worker lease has passed (the backlog; the
 * older half on their last attempt, so they fail and refund, the newer half requeued), plus
 * jobs the sweep must leave alone: N / 10 running jobs whose lease is still valid and N / 10
 * running jobs without a lease (moved by operators).
 */
export async function seedLeaseBacklog(n: number, now: number): Promise<BenchEnv> {
  const env = await newDeployment(n, now);
  const owners = await seedOwners(env);
  const maxAttempts = DEFAULT_WORKER_CONFIG.maxAttempts;
  const running = (i: number, prompt: string) => ({
    userId: owners[i % OWNERS],
    prompt,
    durationSec: 10,
    creditsUsed: 10,
    status: "running" as const,
    creditStatus: "held" as const,
    createdAt: now - HOUR_MS + i,
    startedAt: now - HOUR_MS / 2 + i,
  });
  const others = Math.floor(n / 10);
  await insertHeldJobs(env, [
    {
      count: n,
      make: (i) => ({
        ...running(i, `stalled job ${i}`),
        workerId: `gpu-${i % 16}`,
        leaseExpiresAt: now - n - 1 + i,
        attempt: i < n / 2 ? maxAttempts : 1 + (i % (maxAttempts - 1)),
        progress: 40,
      }),
    },
    {
      count: others,
      make: (i) => ({
        ...running(i, `healthy job ${i}`),
        workerId: `gpu-${i % 16}`,
        leaseExpiresAt: now + 5 * 60 * 1000 + i,
        attempt: 1,
        progress: 60,
      }),
    },
    { count: others, make: (i) => running(i, `operator job ${i}`) },
  ]);
  return env;
}

/**
 * The queue-timeout sweep's deployment: N jobs queued for longer than the queue timeout (the
 * backlog), plus jobs it must leave alone: N / 10 jobs queued within the timeout and N / 10
 * running jobs.
 */
export async function seedQueueBacklog(n: number, now: number): Promise<BenchEnv> {
  const env = await newDeployment(n, now);
  const owners = await seedOwners(env);
  const timeout = DEFAULT_WORKER_CONFIG.queueTimeoutMs;
  const job = (i: number, prompt: string, createdAt: number) => ({
    userId: owners[i % OWNERS],
    prompt,
    durationSec: 10,
    creditsUsed: 10,
    status: "queued" as const,
    creditStatus: "held" as const,
    createdAt,
  });
  const others = Math.floor(n / 10);
  await insertHeldJobs(env, [
    { count: n, make: (i) => job(i, `stale job ${i}`, now - timeout - n - 1 + i) },
    { count: others, make: (i) => job(i, `fresh job ${i}`, now - timeout / 2 + i) },
    {
      count: others,
      make: (i) => ({
        ...job(i, `running job ${i}`, now - HOUR_MS + i),
        status: "running",
        workerId: `gpu-${i % 16}`,
        leaseExpiresAt: now + 5 * 60 * 1000 + i,
        attempt: 1,
        startedAt: now - HOUR_MS / 2 + i,
      }),
    },
  ]);
  return env;
}
