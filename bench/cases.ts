import { isDeepStrictEqual } from "node:util";
import { vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { PaginationResult } from "convex/server";
import type { Doc, Id, TableNames } from "../convex/_generated/dataModel";
import { MAX_PAGE_SIZE } from "../convex/lib/pagination";
import { QUEUE_POSITION_CAP } from "../convex/model/jobViews";
import { METRIC_SHARDS, hourStart } from "../convex/model/metricsBuckets";
import { PENDING_READ_LIMIT as PENDING_BUCKET_DELTAS } from "../convex/model/metricsBucketDeltas";
import { PENDING_READ_LIMIT, sumGauges } from "../convex/model/subscriptionTotals";
import { measure, type Cost, type Limits } from "./measure";
import { runRenewalCreationPool } from "./renewalPool";
import {
  BENCH_R2_ENV,
  HOLD_SPAN,
  HOLDER_LOTS,
  LOT_HOLDERS,
  graceEndsOf,
  renewalsDueWithPeriodEnds,
  seed,
  seedCreditLots,
  seedLeaseBacklog,
  seedLotExpiryBacklog,
  seedMandateRenewalsDue,
  seedPeriodEnds,
  seedQueueBacklog,
  seedOrphanImages,
  seedRenewalsDue,
  seedSubscriptionTotalDeltas,
  seedUnfoldedHours,
  SEEDED_TOTALS,
  seedBucketDeltas,
  totalDeltaOf,
  unfoldedHours,
  seedVideos,
  type BenchEnv,
} from "./seed";

/**
 * The benchmark's table of cases. To benchmark another function, add one entry:
 *
 * - a `call` case runs its function once (after any unmeasured setup) and returns that
 *   transaction's cost. It passes when its documents read at the largest N are at most
 *   `resultSize + SMALL_CONSTANT` and within ±2 of the smallest N.
 * - a `cron` case runs one transaction of a cron step; the runner repeats it until the step says
 *   nothing more remains. It passes when the seeded backlog is fully drained and every
 *   transaction stays under a quarter of each Convex transaction limit.
 *
 * Always measure through `measure(client, (ctx) => ctx.runQuery/runMutation(ref, args))`: the
 * registered function runs as deployed (validators, auth, handler) inside a transaction that
 * does nothing else.
 *
 * Cases run in the main deployment (`seed`) unless they name another `deployment`: a cron whose
 * backlog would get in the way of other cases (the worker sweeps) gets a deployment of its own,
 * seeded with its backlog and the rows it must leave alone, and dropped once it has drained. A
 * deployment's `env` (environment variables, e.g. R2's) is set while it is seeded and its cases
 * run, and unset after.
 */

/** What "a small constant" is in the acceptance rule: fixed lookups (caller, plan, bucket...). */
export const SMALL_CONSTANT = 20;

/**
 * Explicit fixed budgets, for calls that write several rows: what the call reads besides
 * `resultSize`, as measured (the same at every N), so any new read fails the bench until it is
 * accounted for here. Where reads come from: index lookups (the caller by Clerk id, a metrics
 * bucket, a plan, a lot by its key, the live lots), each document's first read by id, the read
 * each patch makes of its document, a document inserted into a table with triggers read back
 * once. Nothing else: mutations read through a per-transaction document cache
 * (convex/lib/documentCache.ts), so the trigger wrapper's reads of a patched document before and
 * after the patch, and the user row read again by every lot change, read nothing more; writes to
 * tables without triggers skip the wrapper (convex/lib/triggers.ts). The figure before that
 * change follows each budget (then 3 reads a patch: the wrapper's two, on every table).
 */
export const FIXED_READS = {
  /** jobs.createJob, the heavy user's first reserve (its welcome and operator's lots): 11 in all. */
  firstReserve: 10,
  /** worker.failJob ending `failed` (a hold on one active lot, given back to it): 8 in all (10 while buckets were written in place). */
  releaseOnLot: 7,
  /**
   * payments.applyTrueLayerEvent (payment_executed): lot granted, plan changed, the payer's live
   * lots read for the next expiry (welcome, the operator's lot, this purchase): 14 (was 37; 18
   * while its two buckets were written in place).
   */
  paymentExecuted: 13,
  /** worker.completeJob (a hold on one lot settled): 6 in all (8 while buckets were written in place). */
  completeJob: 5,
  /** jobs.createJob over HOLD_SPAN of HOLDER_LOTS lots (resultSize: the live lots, twice): 81 (was 116). */
  reserveOverLots: 21,
  /** Settling a hold over HOLD_SPAN lots (done): 18 (was 49). */
  settleOverLots: 17,
  /** jobs.cancelJob of a hold over HOLD_SPAN lots (resultSize: the live lots): 50 (was 84). */
  releaseOverLots: 20,
  /** The same with the first lot expired since (its credits come back as today's returned lot): 84 (was 127). */
  releaseOverLotsExpired: 24,
};

/** A seeded deployment, built once per N for the cases that name it. */
export type Deployment = {
  name: string;
  seed: (n: number, now: number) => Promise<BenchEnv>;
  /** Environment variables set while it is seeded and its cases run (unset after). */
  env?: Record<string, string>;
};

export const MAIN: Deployment = { name: "main", seed };
const LEASE_BACKLOG: Deployment = { name: "lease backlog", seed: seedLeaseBacklog };
const QUEUE_BACKLOG: Deployment = { name: "queue backlog", seed: seedQueueBacklog };
const CREDIT_LOTS: Deployment = { name: "credit lots", seed: seedCreditLots };
const LOT_EXPIRY_BACKLOG: Deployment = { name: "lot expiry backlog", seed: seedLotExpiryBacklog };
const PERIOD_ENDS: Deployment = { name: "period ends", seed: seedPeriodEnds };
const RENEWALS_DUE: Deployment = { name: "renewals due", seed: seedRenewalsDue };
const MANDATE_RENEWALS_DUE: Deployment = {
  name: "mandate renewals due",
  seed: seedMandateRenewalsDue,
  env: { TRUELAYER_MANDATE_TYPE: "commercial" },
};
const VIDEOS: Deployment = { name: "bucket videos", seed: seedVideos, env: BENCH_R2_ENV };
const ORPHAN_IMAGES: Deployment = { name: "orphan images", seed: seedOrphanImages };
const UNFOLDED_HOURS: Deployment = { name: "unfolded hours", seed: seedUnfoldedHours };
const BUCKET_DELTAS: Deployment = { name: "bucket deltas", seed: seedBucketDeltas };
const TOTAL_DELTAS: Deployment = {
  name: "subscription total deltas",
  seed: seedSubscriptionTotalDeltas,
};

/**
 * What `metrics.overview` reads for a window of `hours` ending with the current hour (besides
 * the caller): a day row per day the window touches, the current hour's buckets (not folded
 * yet) and the folded-activity rows, one per shard each; the subscription gauges' totals row
 * and the unfolded deltas it adds in (up to PENDING_READ_LIMIT, one more to know there are more),
 * and as many of the window's unfolded bucket deltas (model/metricsBucketDeltas.ts).
 */
function overviewRows(hours: number): number {
  const days = hours / 24 + (hours % 24 === 0 ? 1 : 2);
  return (
    Math.floor(days) + METRIC_SHARDS * 2 + 1 + PENDING_READ_LIMIT + 1 + PENDING_BUCKET_DELTAS + 1
  );
}

export type CallCase = {
  kind: "call";
  name: string;
  deployment?: Deployment;
  /** The page or result size the function may legitimately read. */
  resultSize: number;
  /**
   * The fixed reads allowed on top of `resultSize` (reads that are the same at every N): the
   * generic SMALL_CONSTANT when absent. A case whose function writes many rows states its own,
   * from FIXED_READS, where each is itemised (lookups, and what each write costs in reads).
   */
  fixedReads?: number;
  run: (env: BenchEnv) => Promise<Cost>;
};

export type CronStep = { cost: Cost; limits: Limits; handled: number; more: boolean };

export type CronCase = {
  kind: "cron";
  name: string;
  deployment?: Deployment;
  /** How many rows the seed left for this step to process. */
  backlog: (env: BenchEnv) => number;
  step: (env: BenchEnv) => Promise<CronStep>;
  /**
   * Tables this cron is the one serial writer of (a fold writing its totals row in every
   * transaction): judged by writes per transaction (at most one per document), not per drain.
   */
  foldsInto?: TableNames[];
  /**
   * Tables of the rows of the seed's job owners (`seedOwners`: OWNERS users holding the whole
   * backlog, N / OWNERS jobs each): each transaction that handles an owner's jobs writes the
   * owner's user row and lot, so their count grows with what one user has, not with N users.
   * Reported, not judged by the hot-document rule.
   */
  ownerTables?: TableNames[];
};

export type BenchCase = CallCase | CronCase;

const page = (cursor: string | null = null) => ({
  paginationOpts: { numItems: MAX_PAGE_SIZE, cursor },
});

async function newJob(env: BenchEnv, prompt = "a bench job"): Promise<Id<"jobs">> {
  return await env.heavy.as.mutation(api.jobs.createJob, { prompt, durationSec: 5 });
}

const WORKER = "gpu-bench-1";

/** Claims the head of the queue as the workers' HTTP route does (unmeasured setup). */
async function claim(env: BenchEnv) {
  const job = await env.t.mutation(internal.worker.claimJob, { workerId: WORKER });
  if (job === null) {
    throw new Error("bench: the queue is empty");
  }
  return job;
}

/** Claims a job on its last attempt (a job failed as retryable goes back to the queue's head). */
async function claimLastAttempt(env: BenchEnv) {
  let job = await claim(env);
  while (job.attempt < job.maxAttempts) {
    await env.t.mutation(internal.worker.failJob, {
      jobId: job.jobId,
      workerId: WORKER,
      error: "CUDA out of memory",
      retryable: true,
    });
    job = await claim(env);
  }
  return job;
}

/** Throws unless a webhook mutation did what the case is about (a no-op would measure less). */
function expectOutcome<T extends { outcome: string }>(result: T, outcome: T["outcome"]): T {
  if (result.outcome !== outcome) {
    throw new Error(`bench: expected outcome ${outcome}, got ${JSON.stringify(result)}`);
  }
  return result;
}

/** Numbers the payments and webhook events the cases make up, so each one is new. */
let made = 0;
const nextId = (prefix: string) => `${prefix}_bench_${++made}`;

/** A pending payment of the heavy user, with TrueLayer's id attached (unmeasured setup). */
async function pendingPayment(env: BenchEnv): Promise<string> {
  const trueLayerPaymentId = nextId("tl");
  await env.t.run(async (ctx) => {
    await ctx.db.insert("payments", {
      userId: env.heavy.userId,
      trueLayerTxnId: trueLayerPaymentId,
      amount: 6000,
      creditsAdded: 0,
      creditsPurchased: 500,
      timestamp: env.now,
      status: "pending",
      planName: "studio",
      currency: "GBP",
    });
  });
  return trueLayerPaymentId;
}

/** A worker reporting a failure of a job it holds, checked to end in `expected`. */
function failJobCase(
  name: string,
  claimJob: (env: BenchEnv) => Promise<{ jobId: string }>,
  retryable: boolean,
  expected: "queued" | "failed",
  fixedReads?: number,
): CallCase {
  return {
    kind: "call",
    name,
    resultSize: 1,
    fixedReads,
    run: async (env) => {
      const { jobId } = await claimJob(env);
      const { cost, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.worker.failJob, {
          jobId,
          workerId: WORKER,
          error: "CUDA out of memory",
          retryable,
        }),
      );
      if (result.status !== expected) {
        throw new Error(`bench: ${name} ended ${JSON.stringify(result)}`);
      }
      return cost;
    },
  };
}

/** The seeded held job of one of the credit-lots deployment's holders. */
async function heldJobOf(env: BenchEnv, clerkId: string): Promise<Id<"jobs">> {
  return await env.t.run(async (ctx) => {
    const user = await ctx.db
      .query("users")
      .withIndex("by_clerkId", (q) => q.eq("clerkId", clerkId))
      .unique();
    const job =
      user &&
      (await ctx.db
        .query("jobs")
        .withIndex("by_userId", (q) => q.eq("userId", user._id))
        .unique());
    if (!job || job.creditStatus !== "held" || job.allocations?.length !== HOLD_SPAN) {
      throw new Error(`bench: ${clerkId} has no job held over ${HOLD_SPAN} lots`);
    }
    return job._id;
  });
}

/** Throws unless the job's hold ended as the case expects (and over all its lots). */
async function expectCreditStatus(
  env: BenchEnv,
  jobId: Id<"jobs">,
  expected: "settled" | "refunded",
) {
  const job = await env.t.run(async (ctx) => await ctx.db.get("jobs", jobId));
  if (job?.creditStatus !== expected) {
    throw new Error(`bench: expected the hold ${expected}, got ${JSON.stringify(job)}`);
  }
}

type PagedQuery =
  typeof api.credits.listLedger | typeof api.jobs.listUserJobs | typeof api.payments.listPayments;

/** The first and the second full page of one of the heavy user's paginated lists. */
function pagedCases(name: string, query: PagedQuery): CallCase[] {
  const pageCase = (pageNumber: 1 | 2): CallCase => ({
    kind: "call",
    name: `${name} (page ${pageNumber})`,
    resultSize: MAX_PAGE_SIZE,
    run: async (env) => {
      const cursor =
        pageNumber === 1 ? null : (await env.heavy.as.query(query, page())).continueCursor;
      return (await measure(env.heavy.as, (ctx) => ctx.runQuery(query, page(cursor)))).cost;
    },
  });
  return [pageCase(1), pageCase(2)];
}

/** A table's documents counted by `key` (null: not counted), a page per transaction (unmeasured). */
async function tally<T extends TableNames>(
  env: BenchEnv,
  table: T,
  key: (doc: Doc<T>) => string | null,
): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  let cursor: string | null = null;
  for (;;) {
    const page: PaginationResult<Doc<T>> = await env.t.run(
      async (ctx) => await ctx.db.query(table).paginate({ numItems: 4000, cursor }),
    );
    for (const doc of page.page) {
      const k = key(doc);
      if (k !== null) counts[k] = (counts[k] ?? 0) + 1;
    }
    if (page.isDone) return counts;
    cursor = page.continueCursor;
  }
}

/** Throws unless `actual` has exactly the expected counts. */
function expectCounts(
  what: string,
  actual: Record<string, number>,
  expected: Record<string, number>,
) {
  const keys = new Set([...Object.keys(actual), ...Object.keys(expected)]);
  if ([...keys].some((k) => (actual[k] ?? 0) !== (expected[k] ?? 0))) {
    throw new Error(
      `bench: ${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`,
    );
  }
}

/** How many of the first `n` seeded subscribers have `i % 10` among `kinds` (seedPeriodEnds). */
const ofKinds = (n: number, kinds: number[]) =>
  Array.from({ length: n }, (_, i) => i).filter((i) => kinds.includes(i % 10)).length;

/**
 * After the period-end drain: what each seeded group must have become (seedPeriodEnds). Closing
 * periods: renewed (paid: active in the next period), past_due (pending or failed renewal) or
 * canceled; graces over: canceled; renewals due: still active. A rollover lot for every closing
 * subscription that does not cancel (each had unused credits), besides the seeded ones.
 */
async function expectPeriodEndsDrained(env: BenchEnv) {
  const { n } = env;
  const graces = graceEndsOf(n);
  expectCounts(
    "subscriptions by status after the drain",
    await tally(env, "subscriptions", (s) => s.status),
    {
      active: ofKinds(n, [0, 1, 2, 3]) + renewalsDueWithPeriodEnds(n),
      past_due: ofKinds(n, [4, 5, 6]),
      canceled: ofKinds(n, [7, 8, 9]) + graces,
    },
  );
  const seededRollovers = Array.from({ length: graces }, (_, j) => j).filter((j) => j % 4 < 2);
  expectCounts(
    "rollover lots after the drain",
    await tally(env, "creditLots", (lot) => (lot.source === "rollover" ? "rollover" : null)),
    { rollover: ofKinds(n, [0, 1, 2, 3, 4, 5, 6]) + seededRollovers.length },
  );
}

/** The subscription of a seeded subscriber. */
async function subscriptionOf(env: BenchEnv, clerkId: string): Promise<Doc<"subscriptions">> {
  return await env.t.run(async (ctx) => {
    const user = await ctx.db
      .query("users")
      .withIndex("by_clerkId", (q) => q.eq("clerkId", clerkId))
      .unique();
    const sub =
      user &&
      (await ctx.db
        .query("subscriptions")
        .withIndex("by_userId", (q) => q.eq("userId", user._id))
        .unique());
    if (!sub) {
      throw new Error(`bench: ${clerkId} has no subscription`);
    }
    return sub;
  });
}

/**
 * Throws unless the step scheduled nothing of the app's own but the cron's re-run when `more`:
 * its `handled` deletions went to the R2 deletion workpool as one run (lib/workpools.ts), which
 * schedules inside its component (the first enqueue may also start the pool's loop and monitor:
 * at most 2 more), never one action per deletion.
 */
async function expectOneDeletionAction(
  env: BenchEnv,
  cost: Cost,
  handled: number,
  more: boolean,
  rerun: string,
) {
  const newest = await env.t.run(
    async (ctx) => await ctx.db.system.query("_scheduled_functions").order("desc").first(),
  );
  const poolStart = 2;
  const ok =
    cost.functionsScheduled <= (more ? 1 : 0) + poolStart &&
    (!more || newest?.name === rerun) &&
    newest?.name !== "media:deleteVideoObjects";
  if (!ok) {
    throw new Error(
      `bench: expected ${handled} deletions in the workpool and ${more ? "a" : "no"} re-run, got ${cost.functionsScheduled} scheduled, the newest ${newest?.name}`,
    );
  }
}

const DAY = 24 * 60 * 60 * 1000;

/** The arguments the orphan-image sweep's last step scheduled itself with ({} for the first). */
async function orphanSweepContinuation(env: BenchEnv) {
  const newest = await env.t.run(
    async (ctx) => await ctx.db.system.query("_scheduled_functions").order("desc").first(),
  );
  return newest?.name === "media:deleteOrphanImages"
    ? (newest.args[0] as { createdBefore?: number; after?: number })
    : {};
}

export const CASES: BenchCase[] = [
  {
    kind: "call",
    name: "plans.listPlans",
    resultSize: 3,
    run: async (env) => (await measure(env.t, (ctx) => ctx.runQuery(api.plans.listPlans, {}))).cost,
  },
  {
    kind: "call",
    name: "plans.getPlan",
    resultSize: 1,
    run: async (env) =>
      (await measure(env.t, (ctx) => ctx.runQuery(api.plans.getPlan, { name: "studio" }))).cost,
  },
  {
    kind: "call",
    name: "users.getOrCreateUser (new)",
    resultSize: 1,
    run: async (env) => {
      const { clerkId, as } = env.stranger();
      const email = `${clerkId}@example.com`;
      return (
        await measure(as, (ctx) => ctx.runMutation(api.users.getOrCreateUser, { clerkId, email }))
      ).cost;
    },
  },
  {
    kind: "call",
    name: "users.getOrCreateUser (returning, same hour)",
    resultSize: 1,
    run: async (env) =>
      (
        await measure(env.heavy.as, (ctx) =>
          ctx.runMutation(api.users.getOrCreateUser, {
            clerkId: "heavy",
            email: "heavy@example.com",
          }),
        )
      ).cost,
  },
  {
    kind: "call",
    name: "users.getOrCreateUser (returning, new hour)",
    // A user last active hours ago: the activity count moves to this hour (two buckets).
    resultSize: 1,
    run: async (env) => {
      const as = env.as("filler_1");
      return (
        await measure(as, (ctx) =>
          ctx.runMutation(api.users.getOrCreateUser, {
            clerkId: "filler_1",
            email: "filler_1@example.com",
          }),
        )
      ).cost;
    },
  },
  {
    kind: "call",
    name: "users.me",
    resultSize: 1,
    run: async (env) => (await measure(env.heavy.as, (ctx) => ctx.runQuery(api.users.me, {}))).cost,
  },
  {
    kind: "call",
    name: "credits.getCredits",
    resultSize: 1,
    run: async (env) =>
      (await measure(env.heavy.as, (ctx) => ctx.runQuery(api.credits.getCredits, {}))).cost,
  },
  ...pagedCases("credits.listLedger", api.credits.listLedger),
  {
    kind: "call",
    name: "jobs.createJob",
    resultSize: 1,
    fixedReads: FIXED_READS.firstReserve,
    run: async (env) =>
      (
        await measure(env.heavy.as, (ctx) =>
          ctx.runMutation(api.jobs.createJob, { prompt: "a measured job", durationSec: 10 }),
        )
      ).cost,
  },
  {
    kind: "call",
    name: "jobs.createJob (idempotent retry)",
    resultSize: 1,
    run: async (env) => {
      const request = { prompt: "retried", durationSec: 5, idempotencyKey: "bench-key" };
      await env.heavy.as.mutation(api.jobs.createJob, request);
      return (await measure(env.heavy.as, (ctx) => ctx.runMutation(api.jobs.createJob, request)))
        .cost;
    },
  },
  {
    kind: "call",
    name: "jobs.getJob (queued)",
    // The job, plus its queue position counted through the index up to the cap.
    resultSize: 1 + QUEUE_POSITION_CAP,
    run: async (env) => {
      const jobId = await newJob(env);
      return (await measure(env.heavy.as, (ctx) => ctx.runQuery(api.jobs.getJob, { jobId }))).cost;
    },
  },
  ...pagedCases("jobs.listUserJobs", api.jobs.listUserJobs),
  {
    kind: "call",
    name: "jobs.cancelJob",
    resultSize: 1,
    run: async (env) => {
      const jobId = await newJob(env);
      return (await measure(env.heavy.as, (ctx) => ctx.runMutation(api.jobs.cancelJob, { jobId })))
        .cost;
    },
  },
  {
    kind: "call",
    name: "jobs.updateJobStatus (internal, running)",
    resultSize: 1,
    run: async (env) => {
      const jobId = await newJob(env);
      return (
        await measure(env.t, (ctx) =>
          ctx.runMutation(internal.jobs.updateJobStatus, { jobId, status: "running" }),
        )
      ).cost;
    },
  },
  {
    kind: "call",
    name: "jobs.updateJobStatus (internal, done)",
    resultSize: 1,
    run: async (env) => {
      const jobId = await newJob(env);
      await env.t.mutation(internal.jobs.updateJobStatus, { jobId, status: "running" });
      return (
        await measure(env.t, (ctx) =>
          ctx.runMutation(internal.jobs.updateJobStatus, {
            jobId,
            status: "done",
            r2Url: "https://videos.example.com/bench.mp4",
          }),
        )
      ).cost;
    },
  },
  {
    kind: "call",
    name: "metrics.overview (24 h)",
    resultSize: overviewRows(24),
    run: async (env) =>
      (
        await measure(env.admin.as, (ctx) =>
          ctx.runQuery(api.metrics.overview, { endHour: hourStart(env.now) }),
        )
      ).cost,
  },
  {
    kind: "call",
    name: "metrics.overview (720 h)",
    resultSize: overviewRows(720),
    run: async (env) =>
      (
        await measure(env.admin.as, (ctx) =>
          ctx.runQuery(api.metrics.overview, { hours: 720, endHour: hourStart(env.now) }),
        )
      ).cost,
  },
  ...pagedCases("payments.listPayments", api.payments.listPayments),
  // `payments.createCheckout` is an action that calls TrueLayer over the network, so it is not
  // run; its database steps are (the internal mutations it runs around the TrueLayer call).
  {
    kind: "call",
    name: "payments.startCheckout (createCheckout's step)",
    resultSize: 1,
    run: async (env) =>
      (
        await measure(env.t, (ctx) =>
          ctx.runMutation(internal.payments.startCheckout, {
            clerkId: "heavy",
            planName: "creator",
            currency: "GBP",
          }),
        )
      ).cost,
  },
  {
    kind: "call",
    name: "payments.attachTrueLayerPayment (createCheckout's step)",
    resultSize: 1,
    run: async (env) => {
      const { paymentId } = await env.t.mutation(internal.payments.startCheckout, {
        clerkId: "heavy",
        planName: "creator",
        currency: "GBP",
      });
      const trueLayerPaymentId = nextId("tl");
      return (
        await measure(env.t, (ctx) =>
          ctx.runMutation(internal.payments.attachTrueLayerPayment, {
            paymentId,
            trueLayerPaymentId,
            resourceToken: "bench-resource-token",
          }),
        )
      ).cost;
    },
  },
  {
    kind: "call",
    name: "payments.failCheckout (createCheckout's step)",
    resultSize: 1,
    run: async (env) => {
      const { paymentId } = await env.t.mutation(internal.payments.startCheckout, {
        clerkId: "heavy",
        planName: "creator",
        currency: "GBP",
      });
      return (
        await measure(env.t, (ctx) =>
          ctx.runMutation(internal.payments.failCheckout, {
            paymentId,
            reason: "TrueLayer answered 503",
          }),
        )
      ).cost;
    },
  },
  // The GPU worker API: the internal mutations its HTTP routes (convex/workerHttp.ts) run.
  {
    kind: "call",
    name: "worker.claimJob (N-deep queue)",
    resultSize: 1,
    run: async (env) => {
      const { cost, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.worker.claimJob, { workerId: WORKER }),
      );
      if (result === null) {
        throw new Error("bench: claimJob found the queue empty");
      }
      return cost;
    },
  },
  {
    kind: "call",
    name: "worker.heartbeat",
    resultSize: 1,
    run: async (env) => {
      const { jobId } = await claim(env);
      return (
        await measure(env.t, (ctx) =>
          ctx.runMutation(internal.worker.heartbeat, { jobId, workerId: WORKER, progress: 50 }),
        )
      ).cost;
    },
  },
  {
    kind: "call",
    name: "worker.completeJob",
    resultSize: 1,
    fixedReads: FIXED_READS.completeJob,
    run: async (env) => {
      const { jobId } = await claim(env);
      return (
        await measure(env.t, (ctx) =>
          ctx.runMutation(internal.worker.completeJob, {
            jobId,
            workerId: WORKER,
            r2Url: "https://videos.example.com/bench-worker.mp4",
          }),
        )
      ).cost;
    },
  },
  failJobCase("worker.failJob (retryable, requeued)", claim, true, "queued"),
  failJobCase(
    "worker.failJob (retryable, last attempt: failed)",
    claimLastAttempt,
    true,
    "failed",
    FIXED_READS.releaseOnLot,
  ),
  failJobCase(
    "worker.failJob (not retryable: failed)",
    claim,
    false,
    "failed",
    FIXED_READS.releaseOnLot,
  ),
  // Webhooks: the internal mutations the verified TrueLayer and Clerk deliveries run
  // (convex/webhooks.ts), among N payments and N recorded events.
  {
    kind: "call",
    name: "payments.applyTrueLayerEvent (payment_executed)",
    resultSize: 1,
    fixedReads: FIXED_READS.paymentExecuted,
    run: async (env) => {
      const trueLayerPaymentId = await pendingPayment(env);
      const { cost, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.payments.applyTrueLayerEvent, {
          eventId: nextId("evt"),
          type: "payment_executed",
          trueLayerPaymentId,
          occurredAt: env.now,
        }),
      );
      expectOutcome(result, "applied");
      return cost;
    },
  },
  {
    kind: "call",
    name: "payments.applyTrueLayerEvent (duplicate event)",
    resultSize: 1,
    run: async (env) => {
      const event = {
        eventId: nextId("evt"),
        type: "payment_executed" as const,
        trueLayerPaymentId: await pendingPayment(env),
        occurredAt: env.now,
      };
      expectOutcome(await env.t.mutation(internal.payments.applyTrueLayerEvent, event), "applied");
      const { cost, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.payments.applyTrueLayerEvent, event),
      );
      expectOutcome(result, "duplicate");
      return cost;
    },
  },
  {
    kind: "call",
    name: "clerk.applyClerkEvent (user.created)",
    resultSize: 1,
    run: async (env) => {
      const { clerkId } = env.stranger();
      const { cost, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.clerk.applyClerkEvent, {
          eventId: nextId("msg"),
          type: "user.created",
          clerkId,
          email: `${clerkId}@example.com`,
        }),
      );
      expectOutcome(result, "applied");
      return cost;
    },
  },
  {
    kind: "call",
    name: "clerk.applyClerkEvent (user.updated)",
    resultSize: 1,
    run: async (env) => {
      const { cost, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.clerk.applyClerkEvent, {
          eventId: nextId("msg"),
          type: "user.updated",
          clerkId: "filler_3",
          email: "filler_3@new.example.com",
        }),
      );
      expectOutcome(result, "applied");
      return cost;
    },
  },
  {
    kind: "call",
    name: "clerk.applyClerkEvent (user.deleted)",
    resultSize: 1,
    run: async (env) => {
      const { cost, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.clerk.applyClerkEvent, {
          eventId: nextId("msg"),
          type: "user.deleted",
          clerkId: "filler_2",
        }),
      );
      expectOutcome(result, "applied");
      return cost;
    },
  },
  // Credit lots (convex/model/lots.ts), in a deployment of their own: N users with 1.5 N lots,
  // and holders of HOLDER_LOTS live lots each whose hold spans their HOLD_SPAN soonest lots.
  {
    kind: "call",
    name: `jobs.createJob (${HOLDER_LOTS} live lots, hold over ${HOLD_SPAN})`,
    deployment: CREDIT_LOTS,
    resultSize: 2 * HOLDER_LOTS,
    fixedReads: FIXED_READS.reserveOverLots,
    run: async (env) => {
      const { cost, result: jobId } = await measure(env.as(LOT_HOLDERS.reserve), (ctx) =>
        ctx.runMutation(api.jobs.createJob, { prompt: "over many lots", durationSec: 15 }),
      );
      const job = await env.t.run(async (ctx) => await ctx.db.get("jobs", jobId));
      if (job?.allocations?.length !== HOLD_SPAN) {
        throw new Error(
          `bench: expected a hold over ${HOLD_SPAN} lots, got ${JSON.stringify(job)}`,
        );
      }
      return cost;
    },
  },
  {
    kind: "call",
    name: `jobs.updateJobStatus (internal, done; hold over ${HOLD_SPAN} lots)`,
    deployment: CREDIT_LOTS,
    resultSize: 1,
    fixedReads: FIXED_READS.settleOverLots,
    run: async (env) => {
      const jobId = await heldJobOf(env, LOT_HOLDERS.settle);
      await env.t.mutation(internal.jobs.updateJobStatus, { jobId, status: "running" });
      const { cost } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.jobs.updateJobStatus, {
          jobId,
          status: "done",
          r2Url: "https://videos.example.com/bench-lots.mp4",
        }),
      );
      await expectCreditStatus(env, jobId, "settled");
      return cost;
    },
  },
  {
    kind: "call",
    name: `worker.completeJob (hold over ${HOLD_SPAN} lots)`,
    deployment: CREDIT_LOTS,
    resultSize: 1,
    fixedReads: FIXED_READS.settleOverLots,
    run: async (env) => {
      const expected = await heldJobOf(env, LOT_HOLDERS.complete);
      const { jobId } = await claim(env);
      if (jobId !== expected) {
        throw new Error("bench: the claim did not take the job held over lots");
      }
      const { cost } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.worker.completeJob, {
          jobId,
          workerId: WORKER,
          r2Url: "https://videos.example.com/bench-lots-worker.mp4",
        }),
      );
      await expectCreditStatus(env, jobId, "settled");
      return cost;
    },
  },
  {
    kind: "call",
    name: `jobs.cancelJob (hold over ${HOLD_SPAN} lots)`,
    deployment: CREDIT_LOTS,
    resultSize: HOLDER_LOTS,
    fixedReads: FIXED_READS.releaseOverLots,
    run: async (env) => {
      const jobId = await heldJobOf(env, LOT_HOLDERS.release);
      const { cost } = await measure(env.as(LOT_HOLDERS.release), (ctx) =>
        ctx.runMutation(api.jobs.cancelJob, { jobId }),
      );
      await expectCreditStatus(env, jobId, "refunded");
      return cost;
    },
  },
  {
    kind: "call",
    name: `jobs.cancelJob (hold over ${HOLD_SPAN} lots, one expired since)`,
    deployment: CREDIT_LOTS,
    // The holder's live lots read twice: the expired lot out, today's returned lot in.
    resultSize: 2 * HOLDER_LOTS,
    fixedReads: FIXED_READS.releaseOverLotsExpired,
    run: async (env) => {
      const jobId = await heldJobOf(env, LOT_HOLDERS.releaseExpired);
      const { cost } = await measure(env.as(LOT_HOLDERS.releaseExpired), (ctx) =>
        ctx.runMutation(api.jobs.cancelJob, { jobId }),
      );
      await expectCreditStatus(env, jobId, "refunded");
      const returned = await env.t.run(async (ctx) => {
        const job = (await ctx.db.get("jobs", jobId))!;
        const active = await ctx.db
          .query("creditLots")
          .withIndex("by_userId_and_status", (q) =>
            q.eq("userId", job.userId).eq("status", "active"),
          )
          .collect();
        return active.filter((lot) => lot.source === "returned");
      });
      // The seeded returned lot of yesterday, and today's with the expired lot's 3 credits.
      if (returned.length !== 2 || !returned.some((lot) => lot.granted === 3)) {
        throw new Error(`bench: expected today's returned lot, got ${JSON.stringify(returned)}`);
      }
      return cost;
    },
  },
  // Crons last (they change the data). The worker sweeps drain in deployments of their own.
  {
    kind: "cron",
    name: "cron metrics.pruneOldBuckets",
    backlog: (env) => env.n,
    step: async (env) => {
      const { cost, limits, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.metrics.pruneOldBuckets, {}),
      );
      return { cost, limits, handled: result.deleted, more: result.more };
    },
  },
  {
    kind: "cron",
    name: "cron metrics.foldHours",
    deployment: UNFOLDED_HOURS,
    backlog: (env) => unfoldedHours(env.now),
    step: async (env) => {
      const { cost, limits, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.metrics.foldHours, {}),
      );
      return { cost, limits, handled: result.folded, more: result.more };
    },
  },
  {
    kind: "cron",
    name: "cron jobs.expireOldJobs",
    backlog: (env) => env.n,
    step: async (env) => {
      const { cost, limits, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.jobs.expireOldJobs, {}),
      );
      return { cost, limits, handled: result.expired, more: result.more };
    },
  },
  {
    kind: "cron",
    name: "cron worker.sweepExpiredLeases",
    deployment: LEASE_BACKLOG,
    ownerTables: ["users", "creditLots"],
    backlog: (env) => env.n,
    step: async (env) => {
      const { cost, limits, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.worker.sweepExpiredLeases, {}),
      );
      return { cost, limits, handled: result.requeued + result.failed, more: result.more };
    },
  },
  {
    kind: "cron",
    name: "cron worker.sweepQueueTimeouts",
    deployment: QUEUE_BACKLOG,
    ownerTables: ["users", "creditLots"],
    backlog: (env) => env.n,
    step: async (env) => {
      const { cost, limits, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.worker.sweepQueueTimeouts, {}),
      );
      return { cost, limits, handled: result.failed, more: result.more };
    },
  },
  {
    kind: "cron",
    name: "cron credits.expireDueLots",
    deployment: LOT_EXPIRY_BACKLOG,
    backlog: (env) => env.n,
    step: async (env) => {
      const { cost, limits, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.credits.expireDueLots, {}),
      );
      return { cost, limits, handled: result.expired, more: result.more };
    },
  },
  // Subscriptions (convex/model/subscriptions.ts), each moment in a deployment of its own: N
  // periods ending at the same second (with grace ends and renewals due then), and N renewals
  // due at the same second.
  {
    kind: "cron",
    name: "cron subscriptions.sweepDue (period ends)",
    deployment: PERIOD_ENDS,
    backlog: (env) => env.n + graceEndsOf(env.n) + renewalsDueWithPeriodEnds(env.n),
    step: async (env) => {
      const { cost, limits, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.subscriptions.sweepDue, {}),
      );
      if (!result.more) {
        await expectPeriodEndsDrained(env);
      }
      return { cost, limits, handled: result.handled, more: result.more };
    },
  },
  {
    kind: "cron",
    name: "cron subscriptions.sweepDue (renewals due)",
    deployment: RENEWALS_DUE,
    backlog: (env) => env.n,
    step: (env) => renewalSweepStep(env, "renewals"),
  },
  {
    // The same with every subscriber holding an authorised mandate: charges on mandates.
    kind: "cron",
    name: "cron subscriptions.sweepDue (mandate renewals due)",
    deployment: MANDATE_RENEWALS_DUE,
    backlog: (env) => env.n,
    step: (env) => renewalSweepStep(env, "mandate renewals"),
  },
  {
    // What `startRenewal` does in the database: the renewal payment of one of the N
    // subscriptions, after the drain, whose creation TrueLayer refused (failed, due again: set up
    // unmeasured with `failRenewal`), recorded and enqueued on the renewal creation workpool.
    kind: "call",
    name: "subscriptions.startRenewal (createRenewal's step)",
    deployment: RENEWALS_DUE,
    resultSize: 1,
    run: async (env) => {
      // One of the last enqueued (not canceling): still waiting in the pool, never created
      // (bench/renewalPool.ts runs the first RENEWAL_CREATIONS_RUN).
      const clerkId = `renewing_${env.n - 2}`;
      const waiting = await subscriptionOf(env, clerkId);
      await env.t.mutation(internal.subscriptions.failRenewal, {
        paymentId: waiting.renewal!.paymentId,
        reason: "bench: TrueLayer refused",
        retry: true,
      });
      const sub = await subscriptionOf(env, clerkId);
      const { cost, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.subscriptions.startRenewal, {
          subscriptionId: sub._id,
          periodEnd: sub.currentPeriodEnd!,
        }),
      );
      if (result === null) {
        throw new Error("bench: startRenewal created no renewal payment");
      }
      return cost;
    },
  },
  // Videos in the bucket (R2 configured; the deletion actions are scheduled, never run).
  {
    // The hourly buckets' fold after a drain's burst of counted changes
    // (model/metricsBucketDeltas.ts): N deltas of the current hour added to its METRIC_SHARDS
    // buckets, FOLD_BATCH per transaction. Each bucket is written by every fold transaction (the
    // fold is its only writer), once each.
    kind: "cron",
    name: "cron metrics.foldBucketDeltas",
    deployment: BUCKET_DELTAS,
    foldsInto: ["metricsBuckets"],
    backlog: (env) => env.rows.metricsBucketDeltas,
    step: async (env) => {
      const { cost, limits, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.metrics.foldBucketDeltas, {}),
      );
      if (!result.more) {
        const hour = hourStart(env.now);
        const left = await env.t.run(async (ctx) => ({
          buckets: await ctx.db
            .query("metricsBuckets")
            .withIndex("by_hour_and_shard", (q) => q.eq("hour", hour))
            .collect(),
          deltas: await ctx.db.query("metricsBucketDeltas").take(1),
        }));
        const sum = (key: "jobsDone" | "paymentsSucceeded" | "canceledVoluntarily") =>
          left.buckets.reduce((total, b) => total + (b[key] ?? 0), 0);
        // Deltas of each of bucketDeltaOf's 4 kinds (i % 4 === kind, i < N).
        const count = (kind: number) => Math.floor((env.n - kind + 3) / 4);
        // The seeded buckets hold 12 jobs done and 2 payments each, no cancellations.
        const seeded = METRIC_SHARDS;
        const expected = [12 * seeded + count(0), 2 * seeded + count(1), count(2)];
        const got = [sum("jobsDone"), sum("paymentsSucceeded"), sum("canceledVoluntarily")];
        if (left.deltas.length > 0 || !isDeepStrictEqual(got, expected)) {
          throw new Error(`bench: the fold left ${JSON.stringify(got)}, expected ${expected}`);
        }
      }
      return { cost, limits, handled: result.folded, more: result.more };
    },
  },
  {
    // The subscription gauges' fold after a burst of changes (model/subscriptionTotals.ts): N
    // deltas added to the one totals row, FOLD_BATCH per transaction. The totals row is written
    // by every fold transaction (the fold is its only writer), once each.
    kind: "cron",
    name: "cron metrics.foldSubscriptionTotals",
    deployment: TOTAL_DELTAS,
    foldsInto: ["subscriptionTotals"],
    backlog: (env) => env.n,
    step: async (env) => {
      const { cost, limits, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.metrics.foldSubscriptionTotals, {}),
      );
      if (!result.more) {
        const expected = sumGauges([
          SEEDED_TOTALS,
          ...Array.from({ length: env.n }, (_, i) => totalDeltaOf(i)),
        ]);
        const left = await env.t.run(async (ctx) => ({
          totals: await ctx.db.query("subscriptionTotals").collect(),
          deltas: await ctx.db.query("subscriptionTotalDeltas").take(1),
        }));
        const totals = left.totals.map(({ active, mrr }) => ({ active, mrr }));
        if (left.deltas.length > 0 || !isDeepStrictEqual(totals, [expected])) {
          throw new Error(
            `bench: the fold left ${JSON.stringify(left)}, expected ${JSON.stringify(expected)}`,
          );
        }
      }
      return { cost, limits, handled: result.folded, more: result.more };
    },
  },
  {
    kind: "cron",
    name: "cron jobs.expireOldJobs (bucket videos)",
    deployment: VIDEOS,
    backlog: (env) => env.n,
    step: async (env) => {
      const { cost, limits, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.jobs.expireOldJobs, {}),
      );
      await expectOneDeletionAction(env, cost, result.expired, result.more, "jobs:expireOldJobs");
      return { cost, limits, handled: result.expired, more: result.more };
    },
  },
  // Input-image uploads two days old: N orphans deleted, N / 10 in use by queued jobs kept.
  {
    kind: "cron",
    name: "cron media.deleteOrphanImages",
    deployment: ORPHAN_IMAGES,
    backlog: (env) => env.n,
    step: async (env) => {
      // Two days after the uploads; each step runs as the continuation the last one scheduled.
      const now = Date.now();
      vi.setSystemTime(now + 2 * DAY);
      try {
        const cursor = await orphanSweepContinuation(env);
        const { cost, limits, result } = await measure(env.t, (ctx) =>
          ctx.runMutation(internal.media.deleteOrphanImages, cursor),
        );
        return { cost, limits, handled: result.deleted, more: result.more };
      } finally {
        vi.setSystemTime(now);
      }
    },
  },
  {
    kind: "cron",
    name: "cron media.sweepVideoDeletions",
    deployment: VIDEOS,
    backlog: (env) => env.n,
    step: async (env) => {
      const { cost, limits, result } = await measure(env.t, (ctx) =>
        ctx.runMutation(internal.media.sweepVideoDeletions, {}),
      );
      await expectOneDeletionAction(
        env,
        cost,
        result.scheduled,
        result.more,
        "media:sweepVideoDeletions",
      );
      return { cost, limits, handled: result.scheduled, more: result.more };
    },
  },
];

/**
 * One step of the renewal sweep over N renewals due at the same second. Renewals go to the
 * renewal creation workpool, not one scheduled action each: a step schedules its continuation,
 * and the first also starts the pool's loop and its monitor. Once drained, every renewal due
 * waits in the pool; running it shows how many TrueLayer calls are in flight at once
 * (bench/renewalPool.ts), and for `mandate renewals` that every call is a payment on a mandate.
 */
async function renewalSweepStep(
  env: BenchEnv,
  what: "renewals" | "mandate renewals",
): Promise<CronStep> {
  const { cost, limits, result } = await measure(env.t, (ctx) =>
    ctx.runMutation(internal.subscriptions.sweepDue, {}),
  );
  const poolStart = 2;
  if (cost.functionsScheduled > (result.more ? 1 : 0) + poolStart) {
    throw new Error(
      `bench: ${result.handled} ${what} due scheduled ${cost.functionsScheduled} functions`,
    );
  }
  if (!result.more) {
    const pool = await runRenewalCreationPool(env);
    if (what === "mandate renewals" && pool.onMandate !== pool.created) {
      throw new Error(`bench: ${pool.created - pool.onMandate} renewals not on the mandate`);
    }
    process.stdout.write(
      `N=${env.n} ${what} due at once: the pool created ${pool.created} ` +
        `(${pool.onMandate} on mandates) with at most ${pool.maxInFlight} TrueLayer calls in ` +
        `flight (limit ${pool.limit})\n`,
    );
  }
  return { cost, limits, handled: result.handled, more: result.more };
}
