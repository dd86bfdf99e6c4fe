import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import { QUEUE_POSITION_CAP } from "../convex/model/jobViews";
import { DASHBOARDS, liveWorld, measureLiveWrites } from "../bench/liveWorld";
import { liveCost, record, subscribe } from "../bench/readSets";
import { newConvex, setup, signUp } from "./support/setup";

/**
 * What a live query costs when others write: the invalidation counter of
 * bench/readSets.ts, on small worlds. The benchmark runs the same scenario at Q = 1,000 and
 * 10,000 (`npm run bench`, bench/liveWorld.ts).
 */

const NOW = Date.UTC(2025, 5, 2, 12, 30);

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(NOW);
});
afterEach(() => {
  vi.useRealTimers();
});

describe("the read-set recorder", () => {
  test("a take(n) that stopped at its n-th row does not depend on the rows after it", async () => {
    const t = await setup();
    const { as } = await signUp(t, "u1");
    const jobs: Array<Id<"jobs">> = [];
    for (let i = 0; i < 3; i++) {
      jobs.push(await as.mutation(api.jobs.createJob, { prompt: `p${i}`, durationSec: 5 }));
    }
    // The oldest job: nothing ahead; reads its own row and the (empty) range before it.
    const first = await subscribe(() => as.query(api.jobs.getJob, { jobId: jobs[0] }));
    const last = await subscribe(() => as.query(api.jobs.getJob, { jobId: jobs[2] }));
    // Another user's new job, at the tail, is in neither's range nor their document reads.
    const { as: other } = await signUp(t, "u2");
    const created = await liveCost([first, last], () =>
      other.mutation(api.jobs.createJob, { prompt: "tail", durationSec: 5 }),
    );
    expect(created.invalidated).toBe(0);
    // Claiming the head changes the oldest job's own row and the range the last one counted.
    const claimed = await liveCost([first, last], () =>
      t.mutation(internal.worker.claimJob, { workerId: "gpu-1" }),
    );
    expect(claimed).toMatchObject({ invalidated: 2, documentsWritten: 1 });
    expect((await last.run()) as { queuePosition: unknown }).toMatchObject({
      queuePosition: { position: 2, atLeast: false },
    });
  });

  test("counts the documents a run reads as convex-test's metrics do", async () => {
    const t = await setup();
    const { as } = await signUp(t, "u1");
    const jobId = await as.mutation(api.jobs.createJob, { prompt: "p", durationSec: 5 });
    const { reads } = await record(() => as.query(api.jobs.getJob, { jobId }));
    const measured = await as.run(async (ctx) => {
      const before = await ctx.meta.getTransactionMetrics();
      await ctx.runQuery(api.jobs.getJob, { jobId });
      const after = await ctx.meta.getTransactionMetrics();
      return after.documentsRead.used - before.documentsRead.used;
    });
    expect(reads.documentsRead).toBe(measured);
  });
});

describe("one claim re-runs at most cap + 1 queued getJob subscriptions", () => {
  test("Q = 300 queued jobs, each with a live getJob", async () => {
    const q = 3 * QUEUE_POSITION_CAP;
    const world = await liveWorld(newConvex(), q, NOW);
    const results = await measureLiveWrites(world);
    const claim = results.find((r) => r.write === "worker.claimJob")!;
    // The claimed job's own getJob, plus the jobs at most the cap behind the head.
    expect(claim.byQuery["jobs.getJob"].invalidated).toBeLessThanOrEqual(QUEUE_POSITION_CAP + 1);
    expect(claim.byQuery["jobs.getJob"].invalidated).toBe(QUEUE_POSITION_CAP + 1);
    // Of the other live queries a claim touches only the owner's job list.
    expect(claim.total.invalidated).toBe(QUEUE_POSITION_CAP + 2);

    // Every per-user query reads the caller's user row, so a write to it re-runs all five of
    // that user's subscriptions; dashboards re-run when a rollup row of their window changes.
    const byWrite = Object.fromEntries(results.map((r) => [r.write, r.total.invalidated]));
    expect(byWrite).toEqual({
      // The creator's five (user row, job list, ledger).
      "jobs.createJob (another user)": 5,
      // The head and the cap jobs behind it; the owner's job list.
      "worker.claimJob": QUEUE_POSITION_CAP + 2,
      // The owner's getJob and job list.
      "worker.heartbeat": 2,
      // The owner's five (the credits settle) and every dashboard, day and month (the outcome
      // is counted).
      "worker.completeJob": 5 + 2 * DASHBOARDS,
      // The owner's five, the cap jobs behind it (they move up) and every dashboard.
      "jobs.cancelJob (mid-queue)": 5 + QUEUE_POSITION_CAP + 2 * DASHBOARDS,
      // The payer's five (credits granted, payment updated) and every dashboard.
      "payments.applyTrueLayerEvent (payment_executed)": 5 + 2 * DASHBOARDS,
    });
    // A month's dashboard re-runs on a day row per day and the current hour's buckets, not on
    // the month's hours x shards.
    const completed = results.find((r) => r.write === "worker.completeJob")!;
    const month = completed.byQuery["metrics.overview (720 h)"];
    expect(month.rerunReads / month.invalidated).toBeLessThanOrEqual(60);
    // The re-run positions are right: the job that was second is now first.
    const second = world.users[1];
    expect(
      (await second.as.query(api.jobs.getJob, { jobId: second.jobId }))?.queuePosition,
    ).toEqual({ position: 1, atLeast: false });
  });
});
