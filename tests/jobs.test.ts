import { afterEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import { jobCost } from "../convex/model/jobRequests";
import { checkInvariants } from "./support/invariants";
import { expectCode, identityFor, setup, signUp, type TestConvex } from "./support/setup";

const R2 = "https://videos.example.com/v.mp4";
const HOUR = 60 * 60 * 1000;

async function ledgerKinds(t: TestConvex, jobId: Id<"jobs">) {
  return await t.run(async (ctx) =>
    (
      await ctx.db
        .query("ledger")
        .withIndex("by_jobId", (q) => q.eq("jobId", jobId))
        .collect()
    ).map((row) => [row.kind, row.delta]),
  );
}

afterEach(() => {
  vi.useRealTimers();
});

describe("pricing", () => {
  test("a job costs one credit per second of video", () => {
    expect([5, 10, 15].map(jobCost)).toEqual([5, 10, 15]);
  });
});

describe("createJob", () => {
  test("reserves the price and queues the job in one step", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "u1");
    const jobId = await as.mutation(api.jobs.createJob, {
      prompt: "  a cat surfing  ",
      imageUrl: "https://img.example.com/cat.png",
      durationSec: 10,
      seed: 42,
      cfg: 7.5,
    });
    expect(await as.query(api.jobs.getJob, { jobId })).toMatchObject({
      userId,
      prompt: "a cat surfing",
      status: "queued",
      creditsUsed: 10,
      creditStatus: "held",
      seed: 42,
      cfg: 7.5,
      queuePosition: { position: 1, atLeast: false },
    });
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 70, reserved: 10 });
    expect(await ledgerKinds(t, jobId)).toEqual([["reserve", -10]]);
    await checkInvariants(t);
  });

  const invalid: Array<[string, Record<string, unknown>]> = [
    ["prompt", { prompt: "   " }],
    ["prompt", { prompt: "x".repeat(2001) }],
    ["imageUrl", { imageUrl: "http://img.example.com/a.png" }],
    ["imageUrl", { imageUrl: "javascript:alert(1)" }],
    ["imageUrl", { imageUrl: `https://example.com/${"a".repeat(2040)}` }],
    ["imageUrl", { imageUrl: "not a url" }],
    ["imageUrl", { imageUrl: "https://localhost/a.png" }],
    ["imageUrl", { imageUrl: "https://127.0.0.1/a.png" }],
    ["imageUrl", { imageUrl: "https://169.254.169.254/latest/meta-data/" }],
    ["imageUrl", { imageUrl: "https://10.0.0.7/a.png" }],
    ["imageUrl", { imageUrl: "https://192.168.1.1/a.png" }],
    ["imageUrl", { imageUrl: "https://[::1]/a.png" }],
    ["imageUrl", { imageUrl: "https://metadata.google.internal/a.png" }],
    ["imageUrl", { imageUrl: "https://printer.local/a.png" }],
    ["imageUrl", { imageUrl: "https://intranet/a.png" }],
    ["durationSec", { durationSec: 7 }],
    ["durationSec", { durationSec: 5.5 }],
    ["durationSec", { durationSec: Number.NaN }],
    ["seed", { seed: -1 }],
    ["seed", { seed: 4294967296 }],
    ["seed", { seed: 1.5 }],
    ["cfg", { cfg: 0.5 }],
    ["cfg", { cfg: 21 }],
    ["cfg", { cfg: Number.POSITIVE_INFINITY }],
    ["idempotencyKey", { idempotencyKey: "" }],
    ["idempotencyKey", { idempotencyKey: "k".repeat(129) }],
  ];
  test.each(invalid)(
    "invalid %s is INVALID_ARGUMENT naming the field, and leaves no trace",
    async (field, override) => {
      const t = await setup();
      const { as } = await signUp(t, "u1");
      const error = await as
        .mutation(api.jobs.createJob, { prompt: "ok", durationSec: 5, ...override } as never)
        .catch((e: unknown) => e);
      expect(error).toMatchObject({ data: { code: "INVALID_ARGUMENT" } });
      expect((error as { data: { message: string } }).data.message).toContain(field);
      expect(await t.run(async (ctx) => await ctx.db.query("jobs").collect())).toHaveLength(0);
    },
  );

  test("accepts the boundaries", async () => {
    const t = await setup();
    const { as } = await signUp(t, "u1");
    await t.mutation(internal.credits.grantCredits, {
      userId: (await as.query(api.users.me, {}))!._id,
      credits: 100,
      note: "test",
    });
    for (const args of [
      { prompt: "x".repeat(2000), durationSec: 15, seed: 0, cfg: 1 },
      { prompt: "y", durationSec: 5, seed: 4294967295, cfg: 20, idempotencyKey: "k".repeat(128) },
      { prompt: "z", durationSec: 5, imageUrl: `https://e.com/${"a".repeat(2048 - 14)}` },
      { prompt: "w", durationSec: 5, imageUrl: "https://93.184.215.14/public.png" },
    ]) {
      await as.mutation(api.jobs.createJob, args);
    }
    await checkInvariants(t);
  });

  test("insufficient credits leaves no job and no ledger row", async () => {
    const t = await setup();
    const { as } = await signUp(t, "u1");
    for (let i = 0; i < 5; i++) {
      await as.mutation(api.jobs.createJob, { prompt: `p${i}`, durationSec: 15 });
    }
    // 80 - 75 = 5 left.
    await expectCode(
      as.mutation(api.jobs.createJob, { prompt: "one more", durationSec: 10 }),
      "INSUFFICIENT_CREDITS",
    );
    const { jobs, ledger } = await t.run(async (ctx) => ({
      jobs: await ctx.db.query("jobs").collect(),
      ledger: await ctx.db.query("ledger").collect(),
    }));
    expect(jobs).toHaveLength(5);
    expect(ledger).toHaveLength(6);
    await as.mutation(api.jobs.createJob, { prompt: "fits", durationSec: 5 });
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 0, reserved: 80 });
    await checkInvariants(t);
  });

  test("access: no identity, no user row, another user's id", async () => {
    const t = await setup();
    const { userId } = await signUp(t, "u1");
    const { as: stranger } = await signUp(t, "u2");
    await expectCode(
      t.mutation(api.jobs.createJob, { prompt: "x", durationSec: 5 }),
      "UNAUTHENTICATED",
    );
    await expectCode(
      t
        .withIdentity(identityFor("u3"))
        .mutation(api.jobs.createJob, { prompt: "x", durationSec: 5 }),
      "NOT_FOUND",
    );
    await expectCode(
      stranger.mutation(api.jobs.createJob, { prompt: "x", durationSec: 5, userId }),
      "FORBIDDEN",
    );
  });
});

describe("idempotency keys", () => {
  test("the same key and request returns the first job and charges nothing", async () => {
    const t = await setup();
    const { as } = await signUp(t, "u1");
    const args = { prompt: "a dog", durationSec: 10, seed: 1, idempotencyKey: "req-1" };
    const first = await as.mutation(api.jobs.createJob, args);
    const again = await as.mutation(api.jobs.createJob, { ...args, prompt: " a dog " });
    expect(again).toBe(first);
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 70 });
    await checkInvariants(t);
  });

  test("two users may use the same key independently", async () => {
    const t = await setup();
    const { as: a } = await signUp(t, "u1");
    const { as: b } = await signUp(t, "u2");
    const args = { prompt: "same", durationSec: 5, idempotencyKey: "k" };
    expect(await a.mutation(api.jobs.createJob, args)).not.toBe(
      await b.mutation(api.jobs.createJob, args),
    );
  });

  // Incident: a client reused a key for a new request and silently got the old job back.
  test.each([
    ["prompt", { prompt: "another prompt" }],
    ["durationSec", { durationSec: 15 }],
    ["imageUrl", { imageUrl: "https://img.example.com/b.png" }],
    ["seed", { seed: 2 }],
    ["seed (dropped)", { seed: undefined }],
    ["cfg", { cfg: 3 }],
  ])(
    "reusing a key with a different %s is a CONFLICT and charges nothing",
    async (_name, change) => {
      const t = await setup();
      const { as } = await signUp(t, "u1");
      const args = { prompt: "a dog", durationSec: 10, seed: 1, idempotencyKey: "req-1" };
      await as.mutation(api.jobs.createJob, args);
      await expectCode(as.mutation(api.jobs.createJob, { ...args, ...change }), "CONFLICT");
      expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 70 });
      expect(await t.run(async (ctx) => await ctx.db.query("jobs").collect())).toHaveLength(1);
    },
  );

  // Incident: a refused attempt burned the key, so the client's retry could never succeed.
  test("a refused attempt leaves the key free for a retry", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "u1");
    await t.mutation(internal.credits.grantCredits, { userId, credits: -75, note: "drain" });
    const args = { prompt: "big", durationSec: 15, idempotencyKey: "retry-me" };
    await expectCode(as.mutation(api.jobs.createJob, args), "INSUFFICIENT_CREDITS");
    await t.mutation(internal.credits.grantCredits, { userId, credits: 20, note: "top up" });
    const jobId = await as.mutation(api.jobs.createJob, args);
    expect(await as.mutation(api.jobs.createJob, args)).toBe(jobId);
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 10 });
    await checkInvariants(t);
  });
});

describe("parallel createJob", () => {
  // Incident: concurrent requests each saw the same balance and together spent more than it.
  test("many concurrent creates never reserve more than the balance", async () => {
    const t = await setup();
    const { as } = await signUp(t, "u1");
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        as.mutation(api.jobs.createJob, { prompt: `p${i}`, durationSec: 15 }),
      ),
    );
    const created = results.filter((r) => r.status === "fulfilled");
    const refused = results.filter((r) => r.status === "rejected");
    expect(created).toHaveLength(5); // 5 x 15 = 75 <= 80 < 90
    for (const r of refused) {
      expect((r as PromiseRejectedResult).reason).toMatchObject({
        data: { code: "INSUFFICIENT_CREDITS" },
      });
    }
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 5, reserved: 75 });
    await checkInvariants(t);
  });

  test("concurrent creates with one idempotency key make one job", async () => {
    const t = await setup();
    const { as } = await signUp(t, "u1");
    const ids = await Promise.all(
      Array.from({ length: 10 }, () =>
        as.mutation(api.jobs.createJob, { prompt: "p", durationSec: 5, idempotencyKey: "same" }),
      ),
    );
    expect(new Set(ids).size).toBe(1);
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 75 });
    await checkInvariants(t);
  });
});

describe("updateJobStatus", () => {
  async function queuedJob(durationSec = 10) {
    const t = await setup();
    const { as } = await signUp(t, "u1");
    const jobId = await as.mutation(api.jobs.createJob, { prompt: "x", durationSec });
    const status = (
      status: "queued" | "running" | "done" | "failed" | "canceled" | "expired",
      extra = {},
    ) => t.mutation(internal.jobs.updateJobStatus, { jobId, status, ...extra });
    return { t, as, jobId, status };
  }

  test("create -> running -> done: settles, sets the URL, expiry now+24h, startedAt, finishedAt", async () => {
    vi.useFakeTimers({ now: new Date("2026-11-25T10:00:00Z") });
    const { t, as, jobId, status } = await queuedJob();
    await status("running");
    vi.advanceTimersByTime(60_000);
    expect(await status("done", { r2Url: R2 })).toEqual({ changed: true, status: "done" });
    const job = await as.query(api.jobs.getJob, { jobId });
    const now = Date.parse("2026-11-25T10:01:00Z");
    expect(job).toMatchObject({
      status: "done",
      r2Url: R2,
      expiresAt: now + 24 * HOUR,
      finishedAt: now,
      startedAt: now - 60_000,
      creditStatus: "settled",
    });
    expect(await ledgerKinds(t, jobId)).toEqual([
      ["reserve", -10],
      ["settle", 0],
    ]);
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 70, reserved: 0 });
    await checkInvariants(t);
  });

  test("done keeps an explicit expiresAt and requires an https r2Url", async () => {
    const { as, jobId, status } = await queuedJob();
    await status("running");
    await expectCode(status("done"), "INVALID_ARGUMENT");
    await expectCode(status("done", { r2Url: "ftp://x" }), "INVALID_ARGUMENT");
    await expectCode(status("done", { r2Url: R2, expiresAt: Date.now() - 1 }), "INVALID_ARGUMENT");
    const expiresAt = Date.now() + 3 * HOUR;
    await status("done", { r2Url: R2, expiresAt });
    expect(await as.query(api.jobs.getJob, { jobId })).toMatchObject({ expiresAt });
  });

  test("create -> failed (from queued and from running) refunds and records the error", async () => {
    for (const path of [["failed"], ["running", "failed"]] as const) {
      const { t, as, jobId, status } = await queuedJob(15);
      for (const s of path) await status(s, { error: "GPU out of memory" });
      expect(await as.query(api.jobs.getJob, { jobId })).toMatchObject({
        status: "failed",
        error: "GPU out of memory",
        creditStatus: "refunded",
      });
      expect(await ledgerKinds(t, jobId)).toEqual([
        ["reserve", -15],
        ["release", 15],
      ]);
      expect(await as.query(api.credits.getCredits, {})).toMatchObject({
        credits: 80,
        reserved: 0,
      });
      await checkInvariants(t);
    }
  });

  test("running -> queued is a retry that keeps the hold", async () => {
    const { t, as, jobId, status } = await queuedJob();
    await status("running");
    await status("queued", { error: "worker lost" });
    expect(await as.query(api.jobs.getJob, { jobId })).toMatchObject({
      status: "queued",
      creditStatus: "held",
    });
    await status("running");
    await status("done", { r2Url: R2 });
    expect(await ledgerKinds(t, jobId)).toEqual([
      ["reserve", -10],
      ["settle", 0],
    ]);
    await checkInvariants(t);
  });

  test("repeating the current status is a no-op", async () => {
    const { t, jobId, status } = await queuedJob();
    expect(await status("queued")).toEqual({ changed: false, status: "queued" });
    await status("running");
    expect(await status("running")).toEqual({ changed: false, status: "running" });
    await status("done", { r2Url: R2 });
    expect(await status("done", { r2Url: "https://other.example.com/x.mp4" })).toEqual({
      changed: false,
      status: "done",
    });
    expect(await ledgerKinds(t, jobId)).toEqual([
      ["reserve", -10],
      ["settle", 0],
    ]);
  });

  test.each([
    [[], "done"],
    [["running", "done"], "failed"],
    [["running", "done"], "running"],
    [["running", "done"], "queued"],
    [["failed"], "running"],
    [["failed"], "done"],
    [["failed"], "queued"],
    [[], "canceled"],
    [[], "expired"],
    [["running"], "canceled"],
    [["running", "done"], "expired"],
  ] as const)("after %j, %s is INVALID_TRANSITION and changes nothing", async (path, to) => {
    const { t, jobId, status } = await queuedJob();
    for (const s of path) await status(s, { r2Url: R2 });
    const before = await t.run(async (ctx) => [
      await ctx.db.get("jobs", jobId),
      await ctx.db.query("ledger").collect(),
    ]);
    await expectCode(status(to, { r2Url: R2 }), "INVALID_TRANSITION");
    expect(
      await t.run(async (ctx) => [
        await ctx.db.get("jobs", jobId),
        await ctx.db.query("ledger").collect(),
      ]),
    ).toEqual(before);
  });

  test("an unknown job is NOT_FOUND", async () => {
    const { t, jobId } = await queuedJob();
    await t.run(async (ctx) => ctx.db.delete("jobs", jobId));
    await expectCode(
      t.mutation(internal.jobs.updateJobStatus, { jobId, status: "running" }),
      "NOT_FOUND",
    );
  });
});

describe("getJob", () => {
  test("another user's job is null; no identity is UNAUTHENTICATED", async () => {
    const t = await setup();
    const { as } = await signUp(t, "u1");
    const { as: stranger } = await signUp(t, "u2");
    const jobId = await as.mutation(api.jobs.createJob, { prompt: "x", durationSec: 5 });
    expect(await stranger.query(api.jobs.getJob, { jobId })).toBeNull();
    expect(
      await t.withIdentity(identityFor("nobody")).query(api.jobs.getJob, { jobId }),
    ).toBeNull();
    await expectCode(t.query(api.jobs.getJob, { jobId }), "UNAUTHENTICATED");
  });

  test("does not expose worker internals", async () => {
    const t = await setup();
    const { as } = await signUp(t, "u1");
    const jobId = await as.mutation(api.jobs.createJob, { prompt: "x", durationSec: 5 });
    await t.run(async (ctx) =>
      ctx.db.patch("jobs", jobId, { workerId: "gpu-7", leaseExpiresAt: 1 }),
    );
    const job = await as.query(api.jobs.getJob, { jobId });
    expect(job).not.toHaveProperty("workerId");
    expect(job).not.toHaveProperty("leaseExpiresAt");
  });

  test("queue position counts older queued jobs of everyone, capped", async () => {
    const t = await setup();
    const { as: a, userId } = await signUp(t, "u1");
    const { as: b } = await signUp(t, "u2");
    const first = await a.mutation(api.jobs.createJob, { prompt: "1", durationSec: 5 });
    const second = await b.mutation(api.jobs.createJob, { prompt: "2", durationSec: 5 });
    const third = await a.mutation(api.jobs.createJob, { prompt: "3", durationSec: 5 });
    expect((await a.query(api.jobs.getJob, { jobId: third }))?.queuePosition).toEqual({
      position: 3,
      atLeast: false,
    });
    await t.mutation(internal.jobs.updateJobStatus, { jobId: first, status: "running" });
    expect((await a.query(api.jobs.getJob, { jobId: first }))?.queuePosition).toBeUndefined();
    expect((await b.query(api.jobs.getJob, { jobId: second }))?.queuePosition).toEqual({
      position: 1,
      atLeast: false,
    });
    await t.run(async (ctx) => {
      for (let i = 0; i < 120; i++) {
        await ctx.db.insert("jobs", {
          userId,
          prompt: "old",
          durationSec: 5,
          creditsUsed: 5,
          status: "queued",
          creditStatus: "held",
          createdAt: i,
        });
      }
    });
    expect((await a.query(api.jobs.getJob, { jobId: third }))?.queuePosition).toEqual({
      position: 101,
      atLeast: true,
    });
  });
});

describe("queue position with jobs created in the same millisecond", () => {
  // One transaction inserts them all at one Date.now(): convex-test then orders them by
  // _creationTime (the index's last key), as workers claim them.
  test.each([
    { earlier: 3, same: 5, label: "few ahead" },
    { earlier: 40, same: 90, label: "the cap reached inside the same millisecond" },
    { earlier: 150, same: 20, label: "the cap reached among earlier jobs" },
  ])("matches a full count ($label)", async ({ earlier, same }) => {
    const t = await setup();
    const { as, userId } = await signUp(t, "u1");
    const base = Date.now() - 1_000_000;
    const ids = await t.run(async (ctx) => {
      const job = (createdAt: number) => ({
        userId,
        prompt: "p",
        durationSec: 5,
        creditsUsed: 5,
        status: "queued" as const,
        creditStatus: "held" as const,
        createdAt,
      });
      for (let i = 0; i < earlier; i++) await ctx.db.insert("jobs", job(base + i));
      const tied = [];
      for (let i = 0; i < same; i++) tied.push(await ctx.db.insert("jobs", job(base + earlier)));
      // Later jobs never count.
      await ctx.db.insert("jobs", job(base + earlier + 1));
      return tied;
    });
    for (const [i, jobId] of ids.entries()) {
      const ahead = earlier + i;
      expect((await as.query(api.jobs.getJob, { jobId }))?.queuePosition).toEqual({
        position: Math.min(ahead, 100) + 1,
        atLeast: ahead >= 100,
      });
    }
  });
});

describe("listUserJobs", () => {
  test("pages through the caller's jobs newest first across three pages", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "u1");
    const { as: other } = await signUp(t, "u2");
    await other.mutation(api.jobs.createJob, { prompt: "not mine", durationSec: 5 });
    const ids = [];
    for (let i = 0; i < 7; i++)
      ids.push(await as.mutation(api.jobs.createJob, { prompt: `p${i}`, durationSec: 5 }));
    const seen = [];
    let cursor: string | null = null;
    let pages = 0;
    for (;;) {
      const result: { page: Array<{ _id: string }>; isDone: boolean; continueCursor: string } =
        await as.query(api.jobs.listUserJobs, { userId, paginationOpts: { numItems: 3, cursor } });
      pages++;
      seen.push(...result.page.map((job) => job._id));
      if (result.isDone) break;
      cursor = result.continueCursor;
    }
    expect(pages).toBe(3);
    expect(seen).toEqual(ids.reverse());
  });

  test("page size is capped at 100", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "u1");
    await t.run(async (ctx) => {
      for (let i = 0; i < 150; i++) {
        await ctx.db.insert("jobs", {
          userId,
          prompt: "p",
          durationSec: 5,
          creditsUsed: 5,
          status: "failed",
          creditStatus: "refunded",
          createdAt: i,
        });
      }
    });
    const result = await as.query(api.jobs.listUserJobs, {
      paginationOpts: { numItems: 1000, cursor: null },
    });
    expect(result.page).toHaveLength(100);
    expect(result.isDone).toBe(false);
  });

  test("another user's id is FORBIDDEN; a caller with no user row gets an empty page", async () => {
    const t = await setup();
    const { userId } = await signUp(t, "u1");
    const { as: stranger } = await signUp(t, "u2");
    await expectCode(
      stranger.query(api.jobs.listUserJobs, {
        userId,
        paginationOpts: { numItems: 5, cursor: null },
      }),
      "FORBIDDEN",
    );
    expect(
      await t
        .withIdentity(identityFor("new"))
        .query(api.jobs.listUserJobs, { paginationOpts: { numItems: 5, cursor: null } }),
    ).toMatchObject({ page: [], isDone: true });
  });
});

describe("listJobs (the usePaginatedQuery list)", () => {
  test("pages through the caller's jobs like listUserJobs; the spec's { userId } call still works", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "u1");
    const { as: other } = await signUp(t, "u2");
    await other.mutation(api.jobs.createJob, { prompt: "not mine", durationSec: 5 });
    const ids = [];
    for (let i = 0; i < 5; i++)
      ids.push(await as.mutation(api.jobs.createJob, { prompt: `p${i}`, durationSec: 5 }));
    const first = await as.query(api.jobs.listJobs, {
      paginationOpts: { numItems: 3, cursor: null },
    });
    const second = await as.query(api.jobs.listJobs, {
      paginationOpts: { numItems: 3, cursor: first.continueCursor },
    });
    expect([...first.page, ...second.page].map((job) => job._id)).toEqual([...ids].reverse());
    expect(second.isDone).toBe(true);
    const spec = await as.query(api.jobs.listUserJobs, { userId });
    expect(spec.page.map((job) => job._id)).toEqual([...ids].reverse());
  });
});

describe("cancelJob", () => {
  test("create -> cancel refunds; canceling again changes nothing", async () => {
    const t = await setup();
    const { as } = await signUp(t, "u1");
    const jobId = await as.mutation(api.jobs.createJob, { prompt: "x", durationSec: 10 });
    expect(await as.mutation(api.jobs.cancelJob, { jobId })).toEqual({
      changed: true,
      status: "canceled",
    });
    expect(await as.mutation(api.jobs.cancelJob, { jobId })).toEqual({
      changed: false,
      status: "canceled",
    });
    expect(await ledgerKinds(t, jobId)).toEqual([
      ["reserve", -10],
      ["release", 10],
    ]);
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 80, reserved: 0 });
    // A report arriving after the cancel cannot revive it.
    await expectCode(
      t.mutation(internal.jobs.updateJobStatus, { jobId, status: "running" }),
      "INVALID_TRANSITION",
    );
    await checkInvariants(t);
  });

  test("a running or finished job cannot be canceled; a stranger gets NOT_FOUND", async () => {
    const t = await setup();
    const { as } = await signUp(t, "u1");
    const { as: stranger } = await signUp(t, "u2");
    const jobId = await as.mutation(api.jobs.createJob, { prompt: "x", durationSec: 10 });
    await expectCode(stranger.mutation(api.jobs.cancelJob, { jobId }), "NOT_FOUND");
    await t.mutation(internal.jobs.updateJobStatus, { jobId, status: "running" });
    await expectCode(as.mutation(api.jobs.cancelJob, { jobId }), "INVALID_TRANSITION");
    await t.mutation(internal.jobs.updateJobStatus, { jobId, status: "done", r2Url: R2 });
    await expectCode(as.mutation(api.jobs.cancelJob, { jobId }), "INVALID_TRANSITION");
    await checkInvariants(t);
  });
});

describe("expireOldJobs", () => {
  test("the hourly cron expires done jobs past expiresAt and drops their URL", async () => {
    vi.useFakeTimers({ now: new Date("2026-11-25T10:00:00Z") });
    const t = await setup();
    const { as } = await signUp(t, "u1");
    const old = await as.mutation(api.jobs.createJob, { prompt: "old", durationSec: 5 });
    const fresh = await as.mutation(api.jobs.createJob, { prompt: "fresh", durationSec: 5 });
    for (const [jobId, expiresAt] of [
      [old, Date.now() + HOUR],
      [fresh, Date.now() + 48 * HOUR],
    ] as const) {
      await t.mutation(internal.jobs.updateJobStatus, { jobId, status: "running" });
      await t.mutation(internal.jobs.updateJobStatus, {
        jobId,
        status: "done",
        r2Url: R2,
        expiresAt,
      });
    }
    vi.advanceTimersByTime(2 * HOUR);
    await t.finishAllScheduledFunctions(vi.runAllTimers);
    // Crons do not run in convex-test; call the cron's function as the scheduler would.
    expect(await t.mutation(internal.jobs.expireOldJobs, {})).toEqual({ expired: 1, more: false });
    const expired = await as.query(api.jobs.getJob, { jobId: old });
    expect(expired).toMatchObject({ status: "expired", creditStatus: "settled" });
    expect(expired).not.toHaveProperty("r2Url");
    expect(await as.query(api.jobs.getJob, { jobId: fresh })).toMatchObject({
      status: "done",
      r2Url: R2,
    });
    await checkInvariants(t);
  });

  test("a backlog larger than a batch drains through self-scheduled batches", async () => {
    vi.useFakeTimers({ now: new Date("2026-11-25T10:00:00Z") });
    const t = await setup();
    const { userId } = await signUp(t, "u1");
    await t.run(async (ctx) => {
      for (let i = 0; i < 450; i++) {
        await ctx.db.insert("jobs", {
          userId,
          prompt: "p",
          durationSec: 5,
          creditsUsed: 5,
          status: "done",
          creditStatus: "settled",
          r2Url: R2,
          expiresAt: Date.now() - 1000 - i,
          createdAt: i,
        });
      }
    });
    expect(await t.mutation(internal.jobs.expireOldJobs, {})).toEqual({ expired: 200, more: true });
    await t.finishAllScheduledFunctions(vi.runAllTimers);
    const remaining = await t.run(
      async (ctx) =>
        await ctx.db
          .query("jobs")
          .withIndex("by_status", (q) => q.eq("status", "done"))
          .collect(),
    );
    expect(remaining).toHaveLength(0);
  });
});
