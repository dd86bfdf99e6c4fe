/// <reference types="vite/client" />
import { convexTest } from "convex-test";
import { api, internal } from "../convex/_generated/api";
import type { Doc, Id } from "../convex/_generated/dataModel";
import type { MutationCtx } from "../convex/_generated/server";
import schema from "../convex/schema";
import { registerComponents } from "../tests/support/setup";
import type { BucketDelta, PlanName } from "../convex/lib/validators";
import { videoKeyFor } from "../convex/lib/r2";
import { VIDEO_TTL_MS } from "../convex/model/jobs";
import { addMonthsUtc, dayStart } from "../convex/model/calendar";
import { DELETION_FIRST_RETRY_MS } from "../convex/model/videoDeletions";
import {
  DURATION_BIN_UPPER_MS,
  HOUR_MS,
  METRIC_SHARDS,
  RETENTION_HOURS,
  hourStart,
} from "../convex/model/metricsBuckets";
import { sumGauges, type Gauges } from "../convex/model/subscriptionTotals";
import { PLAN_CATALOG } from "../convex/model/plans";
import {
  GRACE_MS,
  RENEWAL_LEAD_MS,
  periodEnd as periodEndOf,
} from "../convex/model/subscriptionState";
import { lotKeys } from "../convex/model/lots";
import { DEFAULT_WORKER_CONFIG } from "../convex/model/worker";
import { answering, type Client } from "./measure";

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
  const t = answering(registerComponents(convexTest({ schema, modules, transactionLimits: true })));
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
  // Enough balance for every job the cases create: an operator's adjustment lot on top of the
  // sign-up grant.
  const welcome = (await t.run(async (ctx) => await ctx.db.get("users", heavy.userId)))!.credits;
  await t.mutation(internal.credits.grantCredits, {
    userId: heavy.userId,
    credits: HEAVY_CREDITS - welcome,
    note: "bench seed: balance for the cases' jobs",
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
    rows: { plans: 3, users: 2, creditLots: 3, ledger: 3, metricsBuckets: windowBuckets },
  };
  return env;
}

type LedgerRow = Omit<Doc<"ledger">, "_id" | "_creationTime" | "balanceAfter">;

/** A user's ledger rows in time order, each with its running balance; returns the balance. */
async function insertLedgerInOrder(ctx: MutationCtx, rows: LedgerRow[]): Promise<number> {
  rows.sort((a, b) => a.createdAt - b.createdAt);
  let balance = 0;
  for (const row of rows) {
    balance += row.delta;
    await ctx.db.insert("ledger", { ...row, balanceAfter: balance });
  }
  return balance;
}

/** A user's `nextExpiry` cache as `refreshNextExpiry` computes it from its live lots. */
function nextExpiryOf(live: Array<{ available: number; expiresAt: number }>) {
  let nextExpiry: { credits: number; at: number } | undefined;
  for (const { available, expiresAt } of live) {
    if (available === 0) continue;
    if (nextExpiry === undefined || expiresAt < nextExpiry.at) {
      nextExpiry = { credits: available, at: expiresAt };
    } else if (expiresAt === nextExpiry.at) {
      nextExpiry = { credits: nextExpiry.credits + available, at: expiresAt };
    }
  }
  return nextExpiry;
}

/** Adds `count` rows of `table` to the deployment's row counts. */
function counted(env: BenchEnv, table: string, count: number) {
  env.rows[table] = (env.rows[table] ?? 0) + count;
}

/** Job owners for the sweep deployments: refunds spread over this many users. */
const OWNERS = 100;

type UserDoc = Omit<Doc<"users">, "_id" | "_creationTime" | "credits">;
/** The sign-up grant: the default (starter) plan's monthly credits. */
const WELCOME_CREDITS = PLAN_CATALOG[0].monthlyCredits;

/**
 * Inserts `count` users made by `make(i)` as sign-up leaves them: each with its welcome lot
 * (80 credits, never expiring) and the lot's `grant` ledger row, CHUNK documents per
 * transaction. Returns their ids.
 */
async function insertSignedUpUsers(
  env: BenchEnv,
  count: number,
  make: (i: number) => UserDoc,
): Promise<Array<Id<"users">>> {
  const ids: Array<Id<"users">> = [];
  const perChunk = Math.floor(CHUNK / 3);
  for (let start = 0; start < count; start += perChunk) {
    const end = Math.min(count, start + perChunk);
    await env.t.run(async (ctx) => {
      for (let i = start; i < end; i++) {
        const user = make(i);
        const userId = await ctx.db.insert("users", { ...user, credits: WELCOME_CREDITS });
        const lotId = await ctx.db.insert("creditLots", {
          userId,
          source: "welcome",
          sourceKey: lotKeys.welcome(userId),
          granted: WELCOME_CREDITS,
          remaining: WELCOME_CREDITS,
          held: 0,
          status: "active",
          closed: false,
          createdAt: user.createdAt,
        });
        await ctx.db.insert("ledger", {
          userId,
          delta: WELCOME_CREDITS,
          balanceAfter: WELCOME_CREDITS,
          kind: "grant",
          lotId,
          createdAt: user.createdAt,
        });
        ids.push(userId);
      }
    });
  }
  counted(env, "users", count);
  counted(env, "creditLots", count);
  counted(env, "ledger", count);
  return ids;
}

async function seedOwners(env: BenchEnv): Promise<Array<Id<"users">>> {
  return await insertSignedUpUsers(env, OWNERS, (i) => ({
    clerkId: `owner_${i}`,
    email: `owner_${i}@example.com`,
    plan: PLANS[i % 3],
    createdAt: env.now - 30 * DAY_MS,
  }));
}

type JobDoc = Omit<Doc<"jobs">, "_id" | "_creationTime">;
/** `count` jobs made by `make(i)`. */
type JobGroup = { count: number; make: (i: number) => JobDoc };

/**
 * Inserts the groups' jobs (in order), all of them held, as `createJob` leaves them: each job
 * with its `allocations` and its `reserve` ledger row (its price moved from available into held
 * credits, naming the lot, at the job's `createdAt`). The holds are on one lot per owner: a
 * never-expiring operator's lot of exactly what its jobs hold (its `adjustment` row at the
 * user's `createdAt`, before any job), so each owner's caches stay what `changeLot` keeps:
 * `credits` (its welcome lot's) = Σ (remaining − held), `reservedCredits` = Σ held. The owners
 * must exist, signed up, with no held jobs yet. Two passes over `make` (one to total the holds,
 * one to insert), the second CHUNK writes per transaction.
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
  const holdLots = new Map<Id<"users">, Id<"creditLots">>();
  const opening = await t.run(async (ctx) => {
    for (const [userId, jobs] of byUser) {
      const user = await ctx.db.get("users", userId);
      if (user === null || (user.reservedCredits ?? 0) !== 0) {
        throw new Error("bench: a held job's owner must exist and hold nothing yet");
      }
      const reserved = jobs.reduce((total, job) => total + job.price, 0);
      const lotId = await ctx.db.insert("creditLots", {
        userId,
        source: "adjustment",
        sourceKey: "pending",
        granted: reserved,
        remaining: reserved,
        held: reserved,
        status: "active",
        closed: false,
        createdAt: user.createdAt,
      });
      await ctx.db.patch("creditLots", lotId, { sourceKey: `adjustment:${lotId}` });
      holdLots.set(userId, lotId);
      let balance = user.credits + reserved;
      await ctx.db.insert("ledger", {
        userId,
        delta: reserved,
        balanceAfter: balance,
        kind: "adjustment",
        lotId,
        note: "bench seed: the credits the seeded jobs hold",
        createdAt: user.createdAt,
      });
      await ctx.db.patch("users", userId, { reservedCredits: reserved });
      jobs.sort((a, b) => a.at - b.at || a.seq - b.seq);
      for (const job of jobs) {
        balance -= job.price;
        balanceAfter[job.seq] = balance;
      }
    }
    return byUser.size;
  });
  counted(env, "creditLots", opening);
  // Pass 2: each job and its reserve row.
  seq = 0;
  for (const { count, make } of groups) {
    for (let start = 0; start < count; start += CHUNK / 2) {
      const end = Math.min(count, start + CHUNK / 2);
      const first = seq;
      await t.run(async (ctx) => {
        for (let i = start, s = first; i < end; i++, s++) {
          const job = make(i);
          const lotId = holdLots.get(job.userId)!;
          const jobId = await ctx.db.insert("jobs", {
            ...job,
            allocations: [{ lotId, credits: job.creditsUsed }],
          });
          await ctx.db.insert("ledger", {
            userId: job.userId,
            delta: -job.creditsUsed,
            balanceAfter: balanceAfter[s],
            reservedDelta: job.creditsUsed,
            kind: "reserve",
            jobId,
            lotId,
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
 * - N users (besides the admin and the heavy user), signed up (a welcome lot each), last active
 *   some hours ago;
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

  const fillers = await insertSignedUpUsers(env, n, (i) => ({
    clerkId: `filler_${i}`,
    email: `filler_${i}@example.com`,
    plan: PLANS[i % 3],
    createdAt: now - 30 * DAY_MS + i,
    // Last seen some hours ago (inside the metrics window): signing in now moves their count.
    lastActiveHour: current - (1 + (i % 700)) * HOUR_MS,
    lastActivePlan: PLANS[i % 3],
  }));
  const otherUser = fillers[0] ?? admin.userId;
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
  counted(env, "metricsDays", await foldHours(env));
  return env;
}

/**
 * Folds every complete hour into the day rows, as the hourly cron has on a deployment that runs
 * (`metrics:foldHours`); returns the day rows written.
 */
export async function foldHours(env: BenchEnv): Promise<number> {
  let folded = 0;
  for (;;) {
    const result = await env.t.mutation(internal.metrics.foldHours, {});
    folded += result.folded;
    if (!result.more) return Math.ceil(folded / 24);
  }
}

/**
 * The hourly fold's backlog (`metrics.foldHours`): `newDeployment`'s month of buckets, none
 * folded yet, as on a deployment where the fold first runs.
 */
export async function seedUnfoldedHours(n: number, now: number): Promise<BenchEnv> {
  return await newDeployment(n, now);
}

/** Hours the first fold folds on `newDeployment`'s month of buckets (from the oldest one's day). */
export function unfoldedHours(now: number): number {
  const oldest = hourStart(now) - (RETENTION_HOURS - 1) * HOUR_MS;
  return (hourStart(now) - dayStart(oldest)) / HOUR_MS;
}

/**
 * The subscription gauges' fold backlog (`metrics.foldSubscriptionTotals`): the totals row and
 * N deltas not folded yet, as 10^5 period ends at the same second leave them: per 10, four
 * subscriptions started (creator), three canceled (creator), two downgraded (studio to creator)
 * and one started in EUR (starter). `expected` is what the fold must end with.
 */
export function totalDeltaOf(i: number): Gauges {
  const active = { starter: 0, creator: 0, studio: 0 };
  switch (i % 10) {
    case 0:
    case 1:
    case 2:
    case 3:
      return { active: { ...active, creator: 1 }, mrr: { GBP: 3100 } };
    case 4:
    case 5:
    case 6:
      return { active: { ...active, creator: -1 }, mrr: { GBP: -3100 } };
    case 7:
    case 8:
      return { active: { ...active, creator: 1, studio: -1 }, mrr: { GBP: 3100 - 6000 } };
    default:
      return { active: { ...active, starter: 1 }, mrr: { EUR: 1000 } };
  }
}

export const SEEDED_TOTALS: Gauges = {
  active: { starter: 0, creator: 100_000, studio: 100_000 },
  mrr: { GBP: 100_000 * (3100 + 6000) },
};

export async function seedSubscriptionTotalDeltas(n: number, now: number): Promise<BenchEnv> {
  const env = await newDeployment(n, now);
  await env.t.run(async (ctx) => {
    await ctx.db.insert("subscriptionTotals", SEEDED_TOTALS);
  });
  await insertMany(env.t, n, (i) => ({ table: "subscriptionTotalDeltas", doc: totalDeltaOf(i) }));
  counted(env, "subscriptionTotals", 1);
  counted(env, "subscriptionTotalDeltas", n);
  return env;
}

/**
 * The hourly buckets' fold backlog (`metrics.foldBucketDeltas`): N delta rows in the current
 * hour, over every shard, as a drain of 10^5 period ends, lot expiries or job outcomes leaves
 * them: per 4, a job done (with durations), a payment succeeded, a subscription canceled by
 * request, a lot's 5 credits expired.
 */
export function bucketDeltaOf(i: number): BucketDelta {
  switch (i % 4) {
    case 0:
      return { jobsDone: 1, creditsConsumed: 5, queuedToDoneMs: 60_000, runningToDoneMs: 30_000 };
    case 1:
      return { paymentsSucceeded: 1 };
    case 2:
      return { subscriptionsCanceled: 1, canceledVoluntarily: 1 };
    default:
      return { creditsExpired: 5 };
  }
}

export async function seedBucketDeltas(n: number, now: number): Promise<BenchEnv> {
  const env = await newDeployment(n, now);
  await insertMany(env.t, n, (i) => ({
    table: "metricsBucketDeltas",
    doc: { hour: hourStart(now), shard: i % METRIC_SHARDS, delta: bucketDeltaOf(i) },
  }));
  // With the deltas of the deployment's own sign-ups (the admin's and the heavy user's activity).
  const deltas = await env.t.run(
    async (ctx) => await ctx.db.query("metricsBucketDeltas").collect(),
  );
  counted(env, "metricsBucketDeltas", deltas.length);
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

// ---------------------------------------------------------------------------------------------
// Credit lots (convex/model/lots.ts)

/** A lot of a seeded user, as `grantLot` leaves it (and as holds have since changed it). */
type LotSpec = {
  source: "welcome" | "adjustment" | "returned";
  granted: number;
  /** Absent: never expires. */
  expiresAt?: number;
  createdAt: number;
  /** Expired since its job took it (and swept): only its held credits left. */
  expired?: true;
};

/** A queued job of a seeded user, holding its price on the user's lots (`allocations`). */
type HeldJobSpec = {
  prompt: string;
  durationSec: 5 | 10 | 15;
  createdAt: number;
  /** Index into the user's `lots` and credits held there; they sum to the price. */
  allocations: Array<{ lot: number; credits: number }>;
};

export type LotUserSpec = {
  clerkId: string;
  createdAt: number;
  lots: LotSpec[];
  jobs: HeldJobSpec[];
};

const LEDGER_KIND = { welcome: "grant", adjustment: "adjustment", returned: "return" } as const;

/** Documents one user of `insertLotUsers` writes (its transaction chunks stay small). */
const lotUserWrites = (spec: LotUserSpec) =>
  3 +
  3 * spec.lots.length +
  spec.jobs.length * 2 +
  spec.jobs.reduce((total, job) => total + job.allocations.length, 0);

/**
 * Inserts users whose every credit is in a lot, as the real code would have left them: each lot
 * with the `grant`/`adjustment`/`return` ledger row `grantLot` writes (at the lot's
 * `createdAt`); each held job with its `allocations` and, per allocation, the `reserve` row
 * `holdFromLots` writes (delta −credits, reservedDelta +credits, naming the lot, at the job's
 * `createdAt`), the lots' `held` raised to match; the user row's caches as `changeLot` and
 * `refreshNextExpiry` keep them: `credits` = Σ (remaining − held) and `reservedCredits` = Σ held
 * over its active lots, `nextExpiry` the soonest expiry of available credits. Nothing has been
 * consumed, so a lot's `remaining` is its `granted`. A lot past its `expiresAt` stays `active`
 * (its expiry was missed: what the sweep is for). The scheduled `expireLot` runs `grantLot`
 * would have queued are not seeded: the runner drives every function itself. Sourcekeys follow
 * the model (`welcome:<userId>`, `adjustment:<lotId>`, `returned:<userId>:<day>`).
 */
async function insertLotUsers(env: BenchEnv, count: number, make: (i: number) => LotUserSpec) {
  let users = 0;
  let lots = 0;
  let jobs = 0;
  let ledger = 0;
  let i = 0;
  while (i < count) {
    const first = i;
    let writes = 0;
    while (i < count && writes < CHUNK) {
      writes += lotUserWrites(make(i));
      i++;
    }
    const end = i;
    const inserted = await env.t.run(async (ctx) => {
      const tally = { users: 0, lots: 0, jobs: 0, ledger: 0 };
      for (let u = first; u < end; u++) {
        const spec = make(u);
        const held = spec.lots.map(() => 0);
        for (const job of spec.jobs) {
          const price = job.allocations.reduce((total, a) => total + a.credits, 0);
          if (price !== job.durationSec)
            throw new Error("bench: allocations must sum to the price");
          for (const a of job.allocations) held[a.lot] += a.credits;
        }
        held.forEach((h, l) => {
          const { granted, expired } = spec.lots[l];
          if (h > granted || (expired && h !== granted)) {
            throw new Error("bench: a lot holds at most what it has, an expired one all of it");
          }
        });
        const userId = await ctx.db.insert("users", {
          clerkId: spec.clerkId,
          email: `${spec.clerkId}@example.com`,
          plan: "starter",
          credits: 0,
          createdAt: spec.createdAt,
        });
        tally.users++;
        const lotIds: Array<Id<"creditLots">> = [];
        for (const [l, lot] of spec.lots.entries()) {
          const day = Math.floor(lot.createdAt / DAY_MS) * DAY_MS;
          const lotId = await ctx.db.insert("creditLots", {
            userId,
            source: lot.source,
            sourceKey:
              lot.source === "welcome"
                ? `welcome:${userId}`
                : lot.source === "returned"
                  ? `returned:${userId}:${day}`
                  : "pending",
            granted: lot.granted,
            remaining: lot.granted,
            held: held[l],
            expiresAt: lot.expiresAt,
            status: lot.expired ? "expired" : "active",
            closed: lot.expired === true,
            createdAt: lot.createdAt,
          });
          if (lot.source === "adjustment") {
            await ctx.db.patch("creditLots", lotId, { sourceKey: `adjustment:${lotId}` });
          }
          lotIds.push(lotId);
          tally.lots++;
        }
        // The ledger in time order: each grant, then each job's reserve rows.
        const rows: LedgerRow[] = spec.lots.map((lot, l) => ({
          userId,
          delta: lot.granted,
          kind: LEDGER_KIND[lot.source],
          lotId: lotIds[l],
          note: "bench seed: lot granted",
          createdAt: lot.createdAt,
        }));
        for (const job of spec.jobs) {
          const { allocations, ...fields } = job;
          const jobId = await ctx.db.insert("jobs", {
            ...fields,
            userId,
            creditsUsed: job.durationSec,
            status: "queued",
            creditStatus: "held",
            allocations: allocations.map((a) => ({ lotId: lotIds[a.lot], credits: a.credits })),
          });
          tally.jobs++;
          for (const a of allocations) {
            rows.push({
              userId,
              delta: -a.credits,
              reservedDelta: a.credits,
              kind: "reserve",
              jobId,
              lotId: lotIds[a.lot],
              createdAt: job.createdAt,
            });
          }
        }
        const balance = await insertLedgerInOrder(ctx, rows);
        tally.ledger += rows.length;
        // The caches, as refreshNextExpiry computes them (over active lots, due or not).
        const nextExpiry = nextExpiryOf(
          spec.lots.flatMap((lot, l) =>
            lot.expiresAt === undefined || lot.expired
              ? []
              : [{ available: lot.granted - held[l], expiresAt: lot.expiresAt }],
          ),
        );
        const reserved = held.reduce((total, h) => total + h, 0);
        await ctx.db.patch("users", userId, {
          credits: balance,
          ...(reserved > 0 ? { reservedCredits: reserved } : {}),
          ...(nextExpiry !== undefined ? { nextExpiry } : {}),
        });
      }
      return tally;
    });
    users += inserted.users;
    lots += inserted.lots;
    jobs += inserted.jobs;
    ledger += inserted.ledger;
  }
  counted(env, "users", users);
  counted(env, "creditLots", lots);
  counted(env, "jobs", jobs);
  counted(env, "ledger", ledger);
}

/** Live lots of each lot holder of the credit-lots deployment. */
export const HOLDER_LOTS = 30;
/** Lots a seeded hold (and a 15-credit job of a holder) spans: its soonest-expiring ones. */
export const HOLD_SPAN = 5;

/**
 * A holder of HOLDER_LOTS live lots with mixed expiries, in spending order: HOLD_SPAN small
 * adjustments (3 credits each) expiring within days, a returned lot of yesterday (7 days
 * left), adjustments expiring over the coming weeks, some never-expiring adjustments, and the
 * welcome lot (never). `hold`: one queued 15-credit job held over the HOLD_SPAN soonest lots;
 * see `seedCreditLots` for the one whose first lot expired since.
 */
function lotHolder(clerkId: string, now: number, hold: boolean): LotUserSpec {
  const lots: LotSpec[] = [];
  for (let l = 0; l < HOLD_SPAN; l++) {
    lots.push({
      source: "adjustment",
      granted: 3,
      expiresAt: now + (l + 1) * HOUR_MS,
      createdAt: now - 20 * DAY_MS + l,
    });
  }
  const yesterday = Math.floor((now - DAY_MS) / DAY_MS) * DAY_MS;
  lots.push({
    source: "returned",
    granted: 12,
    expiresAt: yesterday + DAY_MS + 7 * DAY_MS,
    createdAt: yesterday + HOUR_MS,
  });
  while (lots.length < HOLDER_LOTS - 4) {
    const k = lots.length;
    lots.push({
      source: "adjustment",
      granted: 20 + k,
      expiresAt: now + k * 2 * DAY_MS,
      createdAt: now - 10 * DAY_MS + k,
    });
  }
  for (let k = 0; k < 3; k++) {
    lots.push({ source: "adjustment", granted: 50, createdAt: now - 15 * DAY_MS + k });
  }
  lots.push({ source: "welcome", granted: 80, createdAt: now - 30 * DAY_MS });
  return {
    clerkId,
    createdAt: now - 30 * DAY_MS,
    lots,
    jobs: hold
      ? [
          {
            prompt: `held over ${HOLD_SPAN} lots`,
            durationSec: 15,
            createdAt: now - HOUR_MS / 2,
            allocations: Array.from({ length: HOLD_SPAN }, (_, l) => ({ lot: l, credits: 3 })),
          },
        ]
      : [],
  };
}

/** Clerk ids of the credit-lots deployment's holders (see `seedCreditLots`). */
export const LOT_HOLDERS = {
  /** Reserves (jobs.createJob); no job yet. */
  reserve: "lots_reserve",
  /** A held job, settled through jobs.updateJobStatus. */
  settle: "lots_settle",
  /** A held job, settled through worker.completeJob (the oldest queued job: claimed first). */
  complete: "lots_complete",
  /** A held job, canceled. */
  release: "lots_release",
  /** A held job whose first lot expired since, canceled (that lot's credits come back as a returned lot). */
  releaseExpired: "lots_release_expired",
} as const;

/**
 * The credit-lots deployment, for reserve, settle and release on lots. Besides
 * `newDeployment`'s rows: N users with lots (each a welcome lot of 80 credits, every other one
 * also an adjustment lot of 20 expiring within a month: 1.5 N lots, with their grant rows), and
 * the LOT_HOLDERS, each with HOLDER_LOTS live lots of mixed expiries (`lotHolder`), all but the
 * reserver with a queued 15-credit job held over its HOLD_SPAN soonest-expiring lots.
 */
export async function seedCreditLots(n: number, now: number): Promise<BenchEnv> {
  const env = await newDeployment(n, now);
  await insertLotUsers(env, n, (i) => ({
    clerkId: `lotuser_${i}`,
    createdAt: now - 40 * DAY_MS + i,
    lots: [
      { source: "welcome", granted: 80, createdAt: now - 40 * DAY_MS + i },
      ...(i % 2 === 1
        ? [
            {
              source: "adjustment" as const,
              granted: 20,
              expiresAt: now + (1 + (i % 30)) * DAY_MS,
              createdAt: now - 5 * DAY_MS + i,
            },
          ]
        : []),
    ],
    jobs: [],
  }));
  const holders: LotUserSpec[] = [
    lotHolder(LOT_HOLDERS.reserve, now, false),
    lotHolder(LOT_HOLDERS.settle, now, true),
    lotHolder(LOT_HOLDERS.complete, now, true),
    lotHolder(LOT_HOLDERS.release, now, true),
    lotHolder(LOT_HOLDERS.releaseExpired, now, true),
  ];
  // The worker's job is the oldest queued one, so a claim takes it.
  holders[2].jobs[0].createdAt = now - HOUR_MS;
  // The first lot of the release-after-expiry holder's hold expired a quarter of an hour ago
  // (after the job took it) and was swept: fully held, so it lost nothing (no ledger row).
  holders[4].lots[0] = { ...holders[4].lots[0], expiresAt: now - HOUR_MS / 4, expired: true };
  await insertLotUsers(env, holders.length, (i) => holders[i]);
  return env;
}

/** Users of the lot expiry backlog: each with this many lots past their expiry. */
const DUE_LOTS_PER_USER = 10;

/**
 * The lot expiry sweep's deployment (`credits.expireDueLots`): N active lots past their
 * `expiresAt` whose scheduled expiry was missed (the backlog), DUE_LOTS_PER_USER (10
 * adjustments of 10 credits, expiring one after the other) per user of N / 10 users, so a
 * batch expires several lots of each user it touches (and each expiry re-reads that user's
 * live lots for `nextExpiry`). Each user also holds a queued 15-credit job over its three
 * soonest due lots (5 each: those lots keep their held 5 when they expire), and lots the sweep
 * must leave alone: a welcome lot (never expires) and an adjustment expiring in 10 days.
 */
export async function seedLotExpiryBacklog(n: number, now: number): Promise<BenchEnv> {
  const env = await newDeployment(n, now);
  const users = Math.ceil(n / DUE_LOTS_PER_USER);
  await insertLotUsers(env, users, (u) => {
    const due = Math.min(DUE_LOTS_PER_USER, n - u * DUE_LOTS_PER_USER);
    const createdAt = now - 60 * DAY_MS + u;
    return {
      clerkId: `lapsed_${u}`,
      createdAt,
      lots: [
        ...Array.from({ length: due }, (_, l) => ({
          source: "adjustment" as const,
          granted: 10,
          // Distinct expiries, oldest first, the whole backlog within the last N ms.
          expiresAt: now - n - 1 + u * DUE_LOTS_PER_USER + l,
          createdAt: createdAt + 1 + l,
        })),
        { source: "welcome" as const, granted: 80, createdAt },
        {
          source: "adjustment" as const,
          granted: 25,
          expiresAt: now + 10 * DAY_MS + u,
          createdAt: createdAt + 20,
        },
      ],
      jobs:
        due >= 3
          ? [
              {
                prompt: `lapsed job ${u}`,
                durationSec: 15,
                // Before its lots expired (within the queue timeout: still queued).
                createdAt: now - HOUR_MS + u,
                allocations: [0, 1, 2].map((lot) => ({ lot, credits: 5 })),
              },
            ]
          : [],
    };
  });
  return env;
}

// ---------------------------------------------------------------------------------------------
// Subscriptions (convex/model/subscriptions.ts)

const planOf = (name: PlanName) => PLAN_CATALOG.find((plan) => plan.name === name)!;
/** The plan a downgrade from `plan` goes to (none from the cheapest). */
const cheaper = (plan: PlanName): PlanName | undefined =>
  plan === "studio" ? "creator" : plan === "creator" ? "starter" : undefined;

/**
 * A user with one live subscription (generation 1: anchored once), as the subscription code
 * would have left it at `periodIndex`:
 * - active: the current period's plan lot (the plan's monthly credits, expiring at the period
 *   end), `used` of them consumed by a finished job;
 * - past_due (the current period unpaid, in its grace): the ended period's plan lot expired at
 *   the period start, its credits rolled over (a rollover lot expiring at the current period's
 *   end) or lost;
 * - `renewal`: the renewal payment of the next period (active) or of the unpaid one (past_due),
 *   with the subscription's `renewal` naming it.
 */
type SubscriberSpec = {
  clerkId: string;
  plan: PlanName;
  status: "active" | "past_due";
  anchor: number;
  periodIndex: number;
  cancelAtPeriodEnd?: boolean;
  pendingPlan?: PlanName;
  renewalDueAt?: number;
  graceEndsAt?: number;
  renewal?: "paid" | "pending" | "failed";
  /** Active: credits of the plan lot a finished job consumed (0: all unused). */
  used?: number;
  /** Past_due: what became of the ended period's lot. */
  ended?: "rolled" | "expired";
};

/** Documents one subscriber writes at most (user + patch, subscription + patch, payment, 2 lots, job, 3 ledger rows). */
const SUBSCRIBER_WRITES = 11;

/**
 * Inserts subscribers whose credits, ledger and caches are as the code keeps them: each lot with
 * the ledger rows that made it (`period` grant at the period start; a job's `reserve` and
 * `settle`; a `rollover` out of the ended lot and into the rollover lot, or its `expire`),
 * `balanceAfter` running in time order, the user's `credits` Σ available over its active lots and
 * `nextExpiry` as `refreshNextExpiry` caches it; lots keyed as the code keys them
 * (`periodLotKey`, `rollover:<lotId>`); and `subscriptionTotals` (the MRR gauges, as the fold
 * leaves them) counting every active subscription. The scheduled
 * period ends, renewals and lot expiries are not seeded (the runner drives every function).
 */
async function insertSubscribers(
  env: BenchEnv,
  count: number,
  make: (i: number) => SubscriberSpec,
) {
  const perChunk = Math.floor(CHUNK / SUBSCRIBER_WRITES);
  const totals = {
    active: { starter: 0, creator: 0, studio: 0 },
    mrr: {} as Record<string, number>,
  };
  const tally = { users: 0, subscriptions: 0, payments: 0, creditLots: 0, jobs: 0, ledger: 0 };
  for (let start = 0; start < count; start += perChunk) {
    const end = Math.min(count, start + perChunk);
    await env.t.run(async (ctx) => {
      for (let i = start; i < end; i++) {
        const spec = make(i);
        const plan = planOf(spec.plan);
        const index = spec.periodIndex;
        const periodStart = addMonthsUtc(spec.anchor, index);
        const periodEnd = addMonthsUtc(spec.anchor, index + 1);
        const userId = await ctx.db.insert("users", {
          clerkId: spec.clerkId,
          email: `${spec.clerkId}@example.com`,
          plan: spec.plan,
          credits: 0,
          createdAt: spec.anchor - HOUR_MS,
        });
        const subscriptionId = await ctx.db.insert("subscriptions", {
          userId,
          plan: spec.plan,
          status: spec.status,
          anchor: spec.anchor,
          generation: 1,
          periodIndex: index,
          currency: "GBP",
          currentPeriodStart: periodStart,
          currentPeriodEnd: periodEnd,
          cancelAtPeriodEnd: spec.cancelAtPeriodEnd ?? false,
          pendingPlan: spec.pendingPlan,
          renewalDueAt: spec.renewalDueAt,
          graceEndsAt: spec.graceEndsAt,
          createdAt: spec.anchor,
        });
        tally.users++;
        tally.subscriptions++;
        const rows: LedgerRow[] = [];
        const live: Array<{ available: number; expiresAt: number }> = [];
        const lot = async (fields: {
          source: "period" | "rollover";
          sourceKey: string;
          granted: number;
          remaining: number;
          expiresAt: number;
          createdAt: number;
        }) => {
          const active = fields.remaining > 0;
          tally.creditLots++;
          if (active) live.push({ available: fields.remaining, expiresAt: fields.expiresAt });
          return await ctx.db.insert("creditLots", {
            ...fields,
            userId,
            held: 0,
            status: active ? "active" : "expired",
            closed: !active,
            subscriptionId,
          });
        };
        if (spec.status === "active") {
          const used = spec.used ?? 0;
          const lotId = await lot({
            source: "period",
            sourceKey: lotKeys.period(subscriptionId, 1, index),
            granted: plan.monthlyCredits,
            remaining: plan.monthlyCredits - used,
            expiresAt: periodEnd,
            createdAt: periodStart,
          });
          rows.push({
            userId,
            delta: plan.monthlyCredits,
            kind: "period",
            lotId,
            note: `Subscription period ${index + 1}`,
            createdAt: periodStart,
          });
          if (used > 0) {
            const createdAt = periodStart + DAY_MS;
            const finishedAt = createdAt + 60_000;
            const jobId = await ctx.db.insert("jobs", {
              userId,
              prompt: `a subscriber's job ${i}`,
              durationSec: used,
              creditsUsed: used,
              status: "expired",
              creditStatus: "settled",
              allocations: [{ lotId, credits: used }],
              createdAt,
              startedAt: createdAt + 1000,
              finishedAt,
              expiresAt: finishedAt + DAY_MS,
            });
            tally.jobs++;
            rows.push(
              {
                userId,
                delta: -used,
                reservedDelta: used,
                kind: "reserve",
                jobId,
                lotId,
                createdAt,
              },
              {
                userId,
                delta: 0,
                reservedDelta: -used,
                kind: "settle",
                jobId,
                lotId,
                createdAt: finishedAt,
              },
            );
          }
        } else {
          // The ended period's lot: granted at its start, gone at its end (the current start).
          const endedStart = addMonthsUtc(spec.anchor, index - 1);
          const granted = plan.monthlyCredits;
          const endedId = await lot({
            source: "period",
            sourceKey: lotKeys.period(subscriptionId, 1, index - 1),
            granted,
            remaining: 0,
            expiresAt: periodStart,
            createdAt: endedStart,
          });
          rows.push({
            userId,
            delta: granted,
            kind: "period",
            lotId: endedId,
            note: `Subscription period ${index}`,
            createdAt: endedStart,
          });
          if (spec.ended === "rolled") {
            const rolledId = await lot({
              source: "rollover",
              sourceKey: `rollover:${endedId}`,
              granted,
              remaining: granted,
              expiresAt: periodEnd,
              createdAt: periodStart,
            });
            rows.push(
              { userId, delta: -granted, kind: "rollover", lotId: endedId, createdAt: periodStart },
              { userId, delta: granted, kind: "rollover", lotId: rolledId, createdAt: periodStart },
            );
          } else {
            rows.push({
              userId,
              delta: -granted,
              kind: "expire",
              lotId: endedId,
              createdAt: periodStart,
            });
          }
        }
        if (spec.renewal !== undefined) {
          // Active: the next period's payment, due at this period's end; past_due: the unpaid
          // current period's, due at the end of the previous one.
          const renewalIndex = spec.status === "active" ? index + 1 : index;
          const dueAt = spec.status === "active" ? periodEnd : periodStart;
          const next = planOf(spec.pendingPlan ?? spec.plan);
          const paid = spec.renewal === "paid";
          const paymentId = await ctx.db.insert("payments", {
            userId,
            trueLayerTxnId: spec.renewal === "failed" ? "" : `tl_renewal_${spec.clerkId}`,
            amount: next.price,
            creditsAdded: paid ? next.monthlyCredits : 0,
            creditsPurchased: next.monthlyCredits,
            timestamp: dueAt - RENEWAL_LEAD_MS,
            status: spec.renewal === "paid" ? "executed" : spec.renewal,
            planName: next.name,
            currency: "GBP",
            subscriptionId,
            purpose: "renewal",
            periodIndex: renewalIndex,
            ...(paid ? { succeededAt: dueAt - RENEWAL_LEAD_MS + HOUR_MS } : {}),
            ...(spec.renewal === "failed" ? { failureReason: "insufficient_funds" } : {}),
          });
          tally.payments++;
          await ctx.db.patch("subscriptions", subscriptionId, {
            renewal: {
              paymentId,
              periodIndex: renewalIndex,
              dueAt,
              amount: next.price,
              currency: "GBP",
              status: spec.renewal,
              payUrl: spec.renewal === "failed" ? null : `https://pay.example.com/${spec.clerkId}`,
            },
          });
        }
        const balance = await insertLedgerInOrder(ctx, rows);
        tally.ledger += rows.length;
        const nextExpiry = nextExpiryOf(live);
        await ctx.db.patch("users", userId, {
          credits: balance,
          ...(nextExpiry !== undefined ? { nextExpiry } : {}),
        });
        if (spec.status === "active") {
          totals.active[spec.plan]++;
          totals.mrr.GBP = (totals.mrr.GBP ?? 0) + plan.price;
        }
      }
    });
  }
  // The gauges, as the fold would have left them (added to those of subscribers inserted before).
  const inserted = await env.t.run(async (ctx) => {
    const row = await ctx.db.query("subscriptionTotals").first();
    if (row === null) {
      await ctx.db.insert("subscriptionTotals", totals);
      return 1;
    }
    await ctx.db.replace("subscriptionTotals", row._id, sumGauges([row, totals]));
    return 0;
  });
  for (const [table, rows] of Object.entries(tally)) counted(env, table, rows);
  counted(env, "subscriptionTotals", inserted);
}

/**
 * The moments the subscription deployments are built around: `periodsEnd` (the start of the hour
 * before `now`, a whole second) is when the closing periods end, the past_due ones' grace ends
 * and the other subscriptions' renewals fall due; each group's anchor is the one second that puts
 * its period (index 4) there.
 */
function subscriptionMoments(now: number) {
  const periodsEnd = hourStart(now);
  const index = 4;
  const anchorFor = (end: number) => {
    const anchor = addMonthsUtc(end, -(index + 1));
    if (periodEndOf(anchor, index) !== end) {
      throw new Error(`bench: no anchor puts period ${index} at ${new Date(end).toISOString()}`);
    }
    return anchor;
  };
  return {
    periodsEnd,
    index,
    /** Period `index` ends at `periodsEnd`. */
    closing: anchorFor(periodsEnd),
    /** Period `index` ended 7 days before: past_due since, its grace ending at `periodsEnd`. */
    grace: anchorFor(periodsEnd - GRACE_MS),
    /** Period `index` ends 3 days later: its renewal is due at `periodsEnd`. */
    renewing: anchorFor(periodsEnd + RENEWAL_LEAD_MS),
    /** A day after `renewing`: its renewal is due tomorrow. */
    renewingLater: anchorFor(periodsEnd + RENEWAL_LEAD_MS + DAY_MS),
  };
}

/** An active subscriber whose renewal payment is due at `renewalDueAt` (not created yet). */
function renewingSubscriber(
  clerkId: string,
  i: number,
  anchor: number,
  index: number,
): SubscriberSpec {
  const plan = PLANS[i % 3];
  return {
    clerkId,
    plan,
    status: "active",
    anchor,
    periodIndex: index,
    renewalDueAt: addMonthsUtc(anchor, index + 1) - RENEWAL_LEAD_MS,
    // Canceling since before the renewal fell due: `cancel` leaves `renewalDueAt` (createRenewal
    // then does nothing); a downgrade prices the renewal at the cheaper plan.
    cancelAtPeriodEnd: i % 10 === 9,
    pendingPlan: i % 10 === 4 ? cheaper(plan) : undefined,
    used: i % 2 === 1 ? 15 : 0,
  };
}

/** Past_due subscribers whose grace ends with the closing periods (N / 10 of them). */
export const graceEndsOf = (n: number) => Math.floor(n / 10);
/** Subscribers of the period-end deployment whose renewal falls due with the closing periods. */
export const renewalsDueWithPeriodEnds = (n: number) => Math.floor(n / 10);

/**
 * The period-end sweep's deployment (`subscriptions.sweepDue`): N active subscriptions anchored
 * on the same second, so all their periods end at the same second, an hour ago, and the
 * scheduled `closePeriod`s were missed. Plans in turn (starter, creator, studio); per 10: four
 * with the next period paid (one of them downgrading: the payment is for the cheaper plan), two
 * with it pending (one downgrading) and one failed (both go past_due), three canceling at the
 * period end. Every other one used 15 of its plan lot's credits on a job; the unused credits of
 * the others roll over (except the canceling ones'), capped at the next plan's. With them, due at
 * the same second: N / 10 past_due subscriptions whose 7-day grace ends then (half of them with
 * the ended period's credits rolled over, half with a pending renewal), and N / 10 active ones,
 * anchored 3 days later, whose renewal payment falls due then. Backlog: N + N / 10 + N / 10.
 */
export async function seedPeriodEnds(n: number, now: number): Promise<BenchEnv> {
  const env = await newDeployment(n, now);
  const at = subscriptionMoments(now);
  await insertSubscribers(env, n, (i) => {
    const plan = PLANS[i % 3];
    const kind = i % 10;
    return {
      clerkId: `closing_${i}`,
      plan,
      status: "active",
      anchor: at.closing,
      periodIndex: at.index,
      cancelAtPeriodEnd: kind >= 7,
      pendingPlan: kind === 3 || kind === 5 ? cheaper(plan) : undefined,
      renewal: kind <= 3 ? "paid" : kind <= 5 ? "pending" : kind === 6 ? "failed" : undefined,
      used: Math.floor(i / 10) % 2 === 1 ? 15 : 0,
    };
  });
  await insertSubscribers(env, graceEndsOf(n), (j) => ({
    clerkId: `grace_${j}`,
    plan: PLANS[j % 3],
    status: "past_due",
    anchor: at.grace,
    periodIndex: at.index + 1,
    graceEndsAt: at.periodsEnd,
    renewal: j % 2 === 0 ? "pending" : "failed",
    ended: j % 4 < 2 ? "rolled" : "expired",
  }));
  await insertSubscribers(env, renewalsDueWithPeriodEnds(n), (j) =>
    renewingSubscriber(`renewing_${j}`, j, at.renewing, at.index),
  );
  return env;
}

/**
 * The renewal sweep's deployment (`subscriptions.sweepDue` 3 days before a period end): N active
 * subscriptions anchored on the same second, whose renewal payments all fall due at the same
 * second, an hour ago, and were not created (the scheduled `createRenewal`s missed); one in 10
 * downgrading, one in 10 canceling (its renewal is still due: `cancel` leaves it). Plus N / 10
 * anchored a day later, whose renewal is due tomorrow: the sweep must leave them alone.
 */
export async function seedRenewalsDue(n: number, now: number): Promise<BenchEnv> {
  const env = await newDeployment(n, now);
  const at = subscriptionMoments(now);
  await insertSubscribers(env, n, (i) =>
    renewingSubscriber(`renewing_${i}`, i, at.renewing, at.index),
  );
  await insertSubscribers(env, Math.floor(n / 10), (j) =>
    renewingSubscriber(`renewing_later_${j}`, j, at.renewingLater, at.index),
  );
  return env;
}

// ---------------------------------------------------------------------------------------------
// Videos in the bucket (convex/model/videos.ts, videoDeletions.ts)

/** R2 configured for the video deployment (never called: the deletion actions are not run). */
export const BENCH_R2_ENV = {
  R2_ACCOUNT_ID: "benchaccount",
  R2_ACCESS_KEY_ID: "bench-access-key",
  R2_SECRET_ACCESS_KEY: "bench-secret-key",
  R2_BUCKET: "bench-videos",
};

/** Rows of the deletion backlog's deployment that the sweep must leave alone: N / 10. */
export const deletionsNotDueOf = (n: number) => Math.floor(n / 10);

/**
 * The video deployment (R2 configured): videos in the bucket, and their deletions.
 * - N done jobs whose video (an object `videoKeyFor(job, attempt)`, checked at completion:
 *   `videoBytes`) expired an hour ago: the expiry cron's backlog; each expiry records a
 *   `videoDeletions` row and each batch schedules one deletion action.
 * - N expired jobs whose object's deletion is due (the deletion sweep's backlog): half never
 *   reported (their action was lost: attempts 0, due 10 minutes after the expiry), half failed
 *   before (1 to 5 attempts, backing off, the last error kept).
 * - N / 10 deletions that must wait: the first N / 10 of those jobs were retried once, and the
 *   first attempt's upload failed to delete three times, its next attempt an hour away.
 * Jobs spread over 100 owners; their ledger rows are not seeded (the expiry and deletions do
 * not touch credits), as for the main deployment's expiry backlog.
 */
export async function seedVideos(n: number, now: number): Promise<BenchEnv> {
  const env = await newDeployment(n, now);
  const owners = await seedOwners(env);
  const video = (i: number, prompt: string, finishedAt: number, attempt: number) => ({
    userId: owners[i % OWNERS],
    prompt,
    durationSec: 5,
    creditsUsed: 5,
    status: "done" as const,
    creditStatus: "settled" as const,
    createdAt: finishedAt - 10 * 60_000,
    startedAt: finishedAt - 5 * 60_000,
    finishedAt,
    expiresAt: finishedAt + VIDEO_TTL_MS,
    workerId: `gpu-${i % 16}`,
    attempt,
    progress: 100,
    videoBytes: 8_000_000 + i,
  });
  const perChunk = CHUNK / 4;
  for (let start = 0; start < n; start += perChunk) {
    const end = Math.min(n, start + perChunk);
    await env.t.run(async (ctx) => {
      for (let i = start; i < end; i++) {
        // Expired an hour ago (distinct seconds, oldest first).
        const expiresAt = Math.floor(now / 1000) * 1000 - HOUR_MS - (n - i) * 1000;
        const jobId = await ctx.db.insert(
          "jobs",
          video(i, `bucket video ${i}`, expiresAt - VIDEO_TTL_MS, 1),
        );
        await ctx.db.patch("jobs", jobId, { videoKey: videoKeyFor(jobId, 1) });
      }
    });
  }
  counted(env, "jobs", n);
  const notDue = deletionsNotDueOf(n);
  for (let start = 0; start < n; start += perChunk) {
    const end = Math.min(n, start + perChunk);
    await env.t.run(async (ctx) => {
      for (let i = start; i < end; i++) {
        const expiredAt = now - 2 * DAY_MS + i;
        const attempt = i < notDue ? 2 : 1;
        const jobId = await ctx.db.insert("jobs", {
          ...video(i, `expired video ${i}`, expiredAt - VIDEO_TTL_MS, attempt),
          status: "expired",
        });
        const key = videoKeyFor(jobId, attempt);
        await ctx.db.patch("jobs", jobId, { videoKey: key });
        const failedBefore = i % 2 === 1;
        await ctx.db.insert("videoDeletions", {
          jobId,
          key,
          reason: "expired",
          attempts: failedBefore ? 1 + (i % 5) : 0,
          // Due: never reported (10 minutes after the expiry), or backing off since failing.
          nextAttemptAt: failedBefore ? now - HOUR_MS - n + i : expiredAt + DELETION_FIRST_RETRY_MS,
          ...(failedBefore ? { lastError: "DELETE answered 503 Service Unavailable" } : {}),
          createdAt: expiredAt,
        });
        if (i < notDue) {
          await ctx.db.insert("videoDeletions", {
            jobId,
            key: videoKeyFor(jobId, 1),
            reason: "retried",
            attempts: 3,
            nextAttemptAt: now + HOUR_MS + i,
            lastError: "DELETE answered 500 Internal Error",
            createdAt: expiredAt - 2 * DAY_MS,
          });
        }
      }
    });
  }
  counted(env, "jobs", n);
  counted(env, "videoDeletions", n + notDue);
  return env;
}

// ---------------------------------------------------------------------------------------------
// Input-image uploads in Convex storage (convex/model/images.ts)

/** Uploads of the orphan deployment that queued jobs still use (kept by the sweep): N / 10. */
export const imagesInUseOf = (n: number) => Math.floor(n / 10);

/**
 * The orphan-image deployment: N + N / 10 files stored in Convex storage at `now` (the case
 * runs the sweep two days later). N are orphans (uploaded, never passed to `createJob`); the
 * first N / 10 are the input images of queued jobs, spread over the first files, which the sweep
 * must keep. Jobs' ledger rows are not seeded (the sweep does not touch credits).
 */
export async function seedOrphanImages(n: number, now: number): Promise<BenchEnv> {
  const env = await newDeployment(n, now);
  const owners = await seedOwners(env);
  const inUse = imagesInUseOf(n);
  const image = new Blob([new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])], {
    type: "image/png",
  });
  const perChunk = CHUNK / 4;
  for (let start = 0; start < n + inUse; start += perChunk) {
    const end = Math.min(n + inUse, start + perChunk);
    await env.t.run(async (ctx) => {
      for (let i = start; i < end; i++) {
        const storageId = await ctx.storage.store(image);
        // Every eleventh file (the first N / 10 of them) is a queued job's input image.
        if (i % 11 === 0 && i / 11 < inUse) {
          await ctx.db.insert("jobs", {
            userId: owners[i % OWNERS],
            prompt: `image job ${i}`,
            imageStorageId: storageId,
            durationSec: 5,
            creditsUsed: 5,
            status: "queued",
            creditStatus: "held",
            createdAt: now,
          });
        }
      }
    });
  }
  counted(env, "_storage", n + inUse);
  counted(env, "jobs", inUse);
  return env;
}

// ---------------------------------------------------------------------------------------------
// Renewals on mandates (convex/model/mandateRenewals.ts)

/**
 * The mandate renewal sweep's deployment (`TRUELAYER_MANDATE_TYPE` set): the renewal sweep's
 * (`seedRenewalsDue`: N renewals due at the same second, N / 10 due tomorrow), every subscriber
 * with an authorised mandate covering the dearest plan, so each renewal the sweep records is a
 * charge on a mandate.
 */
export async function seedMandateRenewalsDue(n: number, now: number): Promise<BenchEnv> {
  const env = await seedRenewalsDue(n, now);
  const clerkIds = [
    ...Array.from({ length: n }, (_, i) => `renewing_${i}`),
    ...Array.from({ length: Math.floor(n / 10) }, (_, j) => `renewing_later_${j}`),
  ];
  const perChunk = CHUNK / 2;
  for (let start = 0; start < clerkIds.length; start += perChunk) {
    await env.t.run(async (ctx) => {
      for (const clerkId of clerkIds.slice(start, start + perChunk)) {
        const user = await ctx.db
          .query("users")
          .withIndex("by_clerkId", (q) => q.eq("clerkId", clerkId))
          .unique();
        await ctx.db.insert("mandates", {
          userId: user!._id,
          trueLayerMandateId: `tl-mandate-${clerkId}`,
          type: "commercial",
          status: "authorized",
          currency: "GBP",
          maxAmount: planOf("studio").price,
          periodicLimit: planOf("studio").price,
          createdAt: now - 40 * DAY_MS,
          authorizedAt: now - 40 * DAY_MS,
        });
      }
    });
  }
  counted(env, "mandates", clerkIds.length);
  return env;
}
