import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import { DEMO_VIDEO_URL as SEEDED_VIDEO_URL } from "../convex/demo";
import { DEMO_VIDEO_URL, DemoWorkerError, runDemoWorker } from "../scripts/demo-worker.mjs";
import { checkInvariants } from "./support/invariants";
import { expectCode, identityFor, setup, type TestConvex } from "./support/setup";

const LOCAL = "http://127.0.0.1:3210";
const SECRET = "demo-secret";

async function tableSizes(t: TestConvex) {
  return await t.run(async (ctx) => ({
    users: (await ctx.db.query("users").collect()).length,
    jobs: (await ctx.db.query("jobs").collect()).length,
    payments: (await ctx.db.query("payments").collect()).length,
  }));
}

/** The demo worker's fetch, served by the deployment's own HTTP router in-process. */
const routerFetch = (t: TestConvex) => (url: string, init?: RequestInit) => {
  const { pathname, search } = new URL(url);
  return t.fetch(pathname + search, init);
};

afterEach(() => {
  vi.unstubAllEnvs();
  vi.useRealTimers();
});

describe("demo:seed", () => {
  // What the seed schedules (lot expiries, the subscription's period end and renewal) stays
  // scheduled: these tests look at what the seed itself wrote.
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout"] });
  });

  test("refuses anything but a local deployment, and production payments, writing nothing", async () => {
    const t = await setup();
    const before = await tableSizes(t);
    vi.stubEnv("CONVEX_CLOUD_URL", "https://happy-otter-123.convex.cloud");
    await expectCode(t.mutation(internal.demo.seed, {}), "FORBIDDEN");
    vi.stubEnv("CONVEX_CLOUD_URL", undefined);
    await expectCode(t.mutation(internal.demo.seed, {}), "FORBIDDEN");
    vi.stubEnv("CONVEX_CLOUD_URL", LOCAL);
    vi.stubEnv("TRUELAYER_ENVIRONMENT", "production");
    await expectCode(t.mutation(internal.demo.seed, {}), "FORBIDDEN");
    expect(await tableSizes(t)).toEqual(before);
  });

  test("a cloud dev deployment may allow it with CINEWEAVE_DEMO_DATA=allow", async () => {
    const t = await setup();
    vi.stubEnv("CONVEX_CLOUD_URL", "https://happy-otter-123.convex.cloud");
    vi.stubEnv("CINEWEAVE_DEMO_DATA", "allow");
    expect(await t.mutation(internal.demo.seed, {})).toMatchObject({ created: true });
  });

  test("fills a local deployment: a job in every status, a paid subscription, a failed payment; once", async () => {
    const t = await setup();
    vi.stubEnv("CONVEX_CLOUD_URL", LOCAL);
    const seeded = await t.mutation(internal.demo.seed, {
      clerkId: "user_dev",
      email: "dev@example.com",
    });
    expect(seeded.created).toBe(true);
    const as = t.withIdentity(identityFor("user_dev"));
    const jobs = await as.query(api.jobs.listJobs, {
      paginationOpts: { numItems: 20, cursor: null },
    });
    expect(jobs.page.map((job) => job.status).sort()).toEqual(
      ["canceled", "done", "expired", "failed", "queued", "running"].sort(),
    );
    expect(jobs.page.find((job) => job.status === "done")!.r2Url).toBe(SEEDED_VIDEO_URL);
    const subscription = await as.query(api.subscriptions.get, {});
    expect(subscription).toMatchObject({ status: "active", plan: "creator" });
    const payments = await as.query(api.payments.listPayments, {
      paginationOpts: { numItems: 10, cursor: null },
    });
    expect(payments.page.map((p) => p.status).sort()).toEqual(["executed", "failed"]);
    await checkInvariants(t);

    const sizes = await tableSizes(t);
    expect(
      await t.mutation(internal.demo.seed, { clerkId: "user_dev", email: "dev@example.com" }),
    ).toMatchObject({ created: false, jobIds: [] });
    expect(await tableSizes(t)).toEqual(sizes);
  });
});

describe("demo:worker", () => {
  beforeEach(() => {
    vi.stubEnv("WORKER_SECRET", SECRET);
    vi.stubEnv("CONVEX_CLOUD_URL", LOCAL);
    // As above; the worker's own pauses (node:timers/promises) stay real.
    vi.useFakeTimers({ toFake: ["setTimeout"] });
  });

  test("claims the seeded queued job, reports progress and completes it: the owner sees it done", async () => {
    const t = await setup();
    const { jobIds } = await t.mutation(internal.demo.seed, {});
    const as = t.withIdentity(identityFor("demo_user"));
    const queued = [];
    for (const jobId of jobIds) {
      if ((await as.query(api.jobs.getJob, { jobId }))?.status === "queued") queued.push(jobId);
    }
    expect(queued).toHaveLength(1);
    const lines: string[] = [];
    const completed = await runDemoWorker({
      siteUrl: "https://demo.convex.site",
      secret: SECRET,
      fetch: routerFetch(t),
      stepMs: 0,
      stopWhenIdle: true,
      log: (line) => lines.push(line),
    });
    expect(completed).toEqual(queued);
    const job = await as.query(api.jobs.getJob, { jobId: queued[0] as Id<"jobs"> });
    expect(job).toMatchObject({ status: "done", progress: 100, r2Url: DEMO_VIDEO_URL });
    expect(lines.some((line) => line.startsWith("Claimed"))).toBe(true);
    await checkInvariants(t);
  });

  test("a wrong secret stops it with the backend's message", async () => {
    const t = await setup();
    await expect(
      runDemoWorker({
        siteUrl: "https://demo.convex.site",
        secret: "wrong",
        fetch: routerFetch(t),
        stopWhenIdle: true,
        log: () => {},
      }),
    ).rejects.toThrow(DemoWorkerError);
  });
});
