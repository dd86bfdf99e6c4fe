import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import crons from "../convex/crons";
import { CLAIM_MAX_SKIPS, DEFAULT_WORKER_CONFIG, SWEEP_BATCH_SIZE } from "../convex/model/worker";
import { checkInvariants } from "./support/invariants";
import { expectCode, paceJobCreation, setup, signUp, type TestConvex } from "./support/setup";

const SECRET = "worker-secret-for-tests";
const R2 = "https://videos.example.com/job.mp4";
const LEASE = DEFAULT_WORKER_CONFIG.leaseMs;
const DAY = 24 * 60 * 60 * 1000;

type Reply = { status: number; body: any; contentType: string | null }; // eslint-disable-line @typescript-eslint/no-explicit-any

/** POSTs `body` (JSON unless `raw` is given) to a worker route with the test secret. */
async function post(
  t: TestConvex,
  path: string,
  body?: unknown,
  opts: { secret?: string | null; raw?: string; authorization?: string } = {},
): Promise<Reply> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  const secret = opts.secret === undefined ? SECRET : opts.secret;
  if (opts.authorization !== undefined) headers.Authorization = opts.authorization;
  else if (secret !== null) headers.Authorization = `Bearer ${secret}`;
  const response = await t.fetch(path, {
    method: "POST",
    headers,
    body: opts.raw ?? JSON.stringify(body),
  });
  const text = await response.text();
  return {
    status: response.status,
    body: text === "" ? null : JSON.parse(text),
    contentType: response.headers.get("Content-Type"),
  };
}

const claim = (t: TestConvex, workerId: string) => post(t, "/worker/claim", { workerId });
const heartbeat = (t: TestConvex, jobId: string, workerId: string, progress?: number) =>
  post(t, "/worker/jobs/heartbeat", { jobId, workerId, progress });
const complete = (t: TestConvex, jobId: string, workerId: string, r2Url = R2) =>
  post(t, "/worker/jobs/complete", { jobId, workerId, r2Url });
const fail = (t: TestConvex, jobId: string, workerId: string, error: string, retryable?: boolean) =>
  post(t, "/worker/jobs/fail", { jobId, workerId, error, retryable });
/** The three reports, fenced to `attempt` (what the claim returned). */
const reportsFor = (t: TestConvex, jobId: string, workerId: string, attempt: unknown) => ({
  heartbeat: () => post(t, "/worker/jobs/heartbeat", { jobId, workerId, attempt, progress: 50 }),
  complete: () => post(t, "/worker/jobs/complete", { jobId, workerId, attempt, r2Url: R2 }),
  fail: (retryable?: boolean) =>
    post(t, "/worker/jobs/fail", { jobId, workerId, attempt, error: "boom", retryable }),
});

/** Everything a worker call could write, to prove that a refused call wrote nothing. */
async function dump(t: TestConvex) {
  return await t.run(async (ctx) => ({
    users: await ctx.db.query("users").collect(),
    jobs: await ctx.db.query("jobs").collect(),
    ledger: await ctx.db.query("ledger").collect(),
  }));
}

async function jobDoc(t: TestConvex, jobId: string) {
  return (await t.run(async (ctx) => await ctx.db.get("jobs", jobId as Id<"jobs">)))!;
}

async function ledgerKinds(t: TestConvex, jobId: string) {
  return await t.run(async (ctx) =>
    (
      await ctx.db
        .query("ledger")
        .withIndex("by_jobId", (q) => q.eq("jobId", jobId as Id<"jobs">))
        .collect()
    ).map((row) => [row.kind, row.delta]),
  );
}

/** A user with `count` queued 5-second jobs, created one millisecond apart (oldest first). */
async function withJobs(count = 1) {
  const t = await setup();
  const { as, userId } = await signUp(t, "owner");
  const jobIds: Id<"jobs">[] = [];
  for (let i = 0; i < count; i++) {
    jobIds.push(await as.mutation(api.jobs.createJob, { prompt: `video ${i}`, durationSec: 5 }));
    vi.setSystemTime(Date.now() + 1);
  }
  return { t, as, userId, jobIds };
}

beforeEach(() => {
  vi.useFakeTimers({ now: new Date("2030-01-01T00:00:00Z") });
  vi.stubEnv("WORKER_SECRET", SECRET);
});

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
  vi.useRealTimers();
});

describe("authentication", () => {
  const routes = [
    ["/worker/claim", { workerId: "w1" }],
    ["/worker/jobs/heartbeat", { workerId: "w1", progress: 10 }],
    ["/worker/jobs/complete", { workerId: "w1", r2Url: R2 }],
    ["/worker/jobs/fail", { workerId: "w1", error: "boom" }],
  ] as const;

  test.each(routes)(
    "%s: missing or wrong secret is 401 and nothing is written",
    async (path, body) => {
      const { t, jobIds } = await withJobs(1);
      expect((await claim(t, "w1")).status).toBe(200);
      const before = await dump(t);
      const payload = { ...body, jobId: jobIds[0] };
      for (const opts of [
        { secret: null },
        { secret: "wrong" },
        { secret: `${SECRET}x` },
        { secret: SECRET.slice(0, -1) },
        { authorization: SECRET },
        { authorization: `Basic ${SECRET}` },
      ]) {
        const reply = await post(t, path, payload, opts);
        expect(reply.status).toBe(401);
        expect(reply.contentType).toBe("application/json");
        expect(reply.body).toMatchObject({ code: "UNAUTHENTICATED" });
      }
      expect(await dump(t)).toEqual(before);
    },
  );

  test("without WORKER_SECRET configured every route is 503 with a clear JSON error", async () => {
    const { t, jobIds } = await withJobs(1);
    vi.stubEnv("WORKER_SECRET", undefined);
    const before = await dump(t);
    for (const [path, body] of routes) {
      const reply = await post(t, path, { ...body, jobId: jobIds[0] });
      expect(reply.status).toBe(503);
      expect(reply.body.code).toBe("UNAVAILABLE");
      expect(reply.body.message).toContain("WORKER_SECRET");
    }
    vi.stubEnv("WORKER_SECRET", "");
    expect((await claim(t, "w1")).status).toBe(503);
    expect(await dump(t)).toEqual(before);
  });

  test("a WORKER_SECRET that is set but cannot be used: 503 on every route whatever is sent, nothing written, logged once", async () => {
    const { t, jobIds } = await withJobs(1);
    expect((await claim(t, "w1")).status).toBe(200);
    const before = await dump(t);
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    const unusable = [
      ["   ", "only whitespace"],
      ["\t\n", "only whitespace"],
      [` ${SECRET} `, "whitespace"],
      [`${SECRET}\n`, "whitespace"],
      ["two words", "whitespace"],
      [`s\u00e9cret-${SECRET}`, "non-ASCII"],
      [`${SECRET}\u0007`, "control"],
      [`"${SECRET}"`, "quotes"],
      [`'${SECRET}'`, "quotes"],
    ] as const;
    for (const [value, reason] of unusable) {
      vi.stubEnv("WORKER_SECRET", value);
      // Whatever a worker might send for it, including the value itself where a header can carry it.
      const authorizations = [
        undefined,
        `Bearer ${value}`,
        `Bearer ${value.trim()}`,
        `Bearer ${value.trim().slice(1, -1)}`,
        `Bearer ${SECRET}`,
        "Bearer two words",
      ].filter((header) => {
        try {
          return header === undefined || new Headers({ Authorization: header }) !== null;
        } catch {
          return false;
        }
      });
      for (const [path, body] of routes) {
        for (const authorization of authorizations) {
          const opts = authorization === undefined ? { secret: null } : { authorization };
          const reply = await post(t, path, { ...body, jobId: jobIds[0] }, opts);
          expect(reply.status, `${JSON.stringify(value)} ${path} ${authorization}`).toBe(503);
          expect(reply.contentType).toBe("application/json");
          expect(reply.body.code).toBe("UNAVAILABLE");
          expect(reply.body.message).toContain("WORKER_SECRET");
          expect(reply.body.message).not.toContain(SECRET);
        }
        // Refused before the body is read: a malformed body is a 503 too, not a 400.
        expect((await post(t, path, undefined, { raw: "{not json" })).status).toBe(503);
      }
      expect(
        logged.mock.calls.some((call) => String(call[0]).includes(reason)),
        `a log naming "${reason}"`,
      ).toBe(true);
    }
    expect(await dump(t)).toEqual(before);
    // Logged once per cold start (per problem), naming the variable and never its value.
    const messages = logged.mock.calls.map((call) => String(call[0]));
    expect(messages).toHaveLength(new Set(messages).size);
    for (const message of messages) {
      expect(message).toContain("WORKER_SECRET");
      expect(message).not.toContain(SECRET);
      expect(message).not.toContain("two words");
    }
    // Fixed: the same deployment serves the workers again.
    vi.stubEnv("WORKER_SECRET", SECRET);
    expect((await claim(t, "w2")).status).toBe(204);
    logged.mockRestore();
  });

  test("an error while checking the secret is a 503 and never reaches the handler", async () => {
    const { t, jobIds } = await withJobs(2);
    expect((await claim(t, "w1")).status).toBe(200);
    const before = await dump(t);
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    const digest = vi.spyOn(crypto.subtle, "digest").mockRejectedValue(new Error("no crypto"));
    for (const [path, body] of routes) {
      const reply = await post(t, path, { ...body, jobId: jobIds[0] });
      expect(reply.status).toBe(503);
      expect(reply.body).toMatchObject({ code: "UNAVAILABLE" });
    }
    expect(await dump(t)).toEqual(before);
    expect(logged).toHaveBeenCalled();
    digest.mockRestore();
    logged.mockRestore();
    expect((await claim(t, "w2")).body).toMatchObject({ jobId: jobIds[1] });
  });

  test("a lowercase bearer scheme is accepted", async () => {
    const { t } = await withJobs(1);
    expect(
      (await post(t, "/worker/claim", { workerId: "w1" }, { authorization: `bearer ${SECRET}` }))
        .status,
    ).toBe(200);
  });
});

describe("POST /worker/claim", () => {
  test("hands out the oldest queued job with its inputs, attempt and lease; 204 when empty", async () => {
    const t = await setup();
    const { as } = await signUp(t, "owner");
    const first = await as.mutation(api.jobs.createJob, {
      prompt: "a red fox",
      durationSec: 10,
      imageUrl: "https://images.example.com/fox.png",
      seed: 42,
      cfg: 7.5,
    });
    vi.setSystemTime(Date.now() + 1);
    const second = await as.mutation(api.jobs.createJob, { prompt: "a blue bird", durationSec: 5 });
    const now = Date.now();

    const a = await claim(t, "gpu-a");
    expect(a.status).toBe(200);
    expect(a.body).toEqual({
      jobId: first,
      prompt: "a red fox",
      imageUrl: "https://images.example.com/fox.png",
      durationSec: 10,
      seed: 42,
      cfg: 7.5,
      attempt: 1,
      maxAttempts: 3,
      leaseExpiresAt: now + LEASE,
    });
    const b = await claim(t, "gpu-b");
    expect(b.body).toMatchObject({ jobId: second, imageUrl: null, seed: null, cfg: null });

    const empty = await claim(t, "gpu-c");
    expect(empty.status).toBe(204);
    expect(empty.body).toBeNull();

    expect(await jobDoc(t, first)).toMatchObject({
      status: "running",
      workerId: "gpu-a",
      startedAt: now,
      leaseExpiresAt: now + LEASE,
      attempt: 1,
      progress: 0,
    });
    expect(await as.query(api.jobs.getJob, { jobId: first })).toMatchObject({
      status: "running",
      attempt: 1,
      progress: 0,
    });
    await checkInvariants(t);
  });

  test("concurrent claims never hand the same job to two workers, and go in FIFO order", async () => {
    const { t, jobIds } = await withJobs(4);
    const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => claim(t, `gpu-${i}`)));
    const claimed = replies.filter((r) => r.status === 200).map((r) => r.body.jobId);
    expect(replies.filter((r) => r.status === 204)).toHaveLength(6);
    expect(new Set(claimed).size).toBe(4);
    expect([...claimed].sort()).toEqual([...jobIds].sort());
    // Sequential claims take jobs strictly oldest first.
    const { t: t2, jobIds: ids2 } = await withJobs(3);
    for (const id of ids2) {
      expect((await claim(t2, "w")).body.jobId).toBe(id);
    }
    const jobs = await dump(t);
    expect(new Set(jobs.jobs.map((j) => j.workerId)).size).toBe(4);
    await checkInvariants(t);
    await checkInvariants(t2);
  });

  test("WORKER_LEASE_MS and WORKER_MAX_ATTEMPTS configure the lease; bad values fall back", async () => {
    const { t } = await withJobs(3);
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    vi.stubEnv("WORKER_LEASE_MS", "30000");
    vi.stubEnv("WORKER_MAX_ATTEMPTS", "5");
    let reply = await claim(t, "w1");
    expect(reply.body).toMatchObject({ leaseExpiresAt: Date.now() + 30_000, maxAttempts: 5 });
    vi.stubEnv("WORKER_LEASE_MS", "10 minutes");
    vi.stubEnv("WORKER_MAX_ATTEMPTS", "-1");
    reply = await claim(t, "w2");
    expect(reply.body).toMatchObject({ leaseExpiresAt: Date.now() + LEASE, maxAttempts: 3 });
    vi.stubEnv("WORKER_LEASE_MS", "1e9");
    vi.stubEnv("WORKER_MAX_ATTEMPTS", "2.5");
    reply = await claim(t, "w3");
    expect(reply.body).toMatchObject({ leaseExpiresAt: Date.now() + LEASE, maxAttempts: 3 });
    expect(warn).toHaveBeenCalledWith(expect.stringContaining('WORKER_LEASE_MS="1e9"'));
    warn.mockRestore();
  });
});

describe("POST /worker/jobs/heartbeat", () => {
  test("extends the lease and shows progress to the owner", async () => {
    const { t, as, jobIds } = await withJobs(1);
    const jobId = jobIds[0];
    await claim(t, "w1");
    vi.setSystemTime(Date.now() + LEASE - 1000);
    const reply = await heartbeat(t, jobId, "w1", 40);
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({
      jobId,
      status: "running",
      progress: 40,
      leaseExpiresAt: Date.now() + LEASE,
    });
    expect(await as.query(api.jobs.getJob, { jobId })).toMatchObject({ progress: 40 });
    // Without progress the lease is still extended and the progress kept.
    vi.setSystemTime(Date.now() + LEASE - 1000);
    expect((await heartbeat(t, jobId, "w1")).body).toMatchObject({
      progress: 40,
      leaseExpiresAt: Date.now() + LEASE,
    });
    // Past the first deadlines: the sweep leaves the job with its worker.
    vi.setSystemTime(Date.now() + LEASE - 1000);
    expect(await t.mutation(internal.worker.sweepExpiredLeases, {})).toEqual({
      requeued: 0,
      failed: 0,
      more: false,
    });
    expect((await complete(t, jobId, "w1")).status).toBe(200);
    await checkInvariants(t);
  });

  test.each([-1, 101, 12.5, Number.MAX_SAFE_INTEGER])(
    "progress %s is a 400 and changes nothing",
    async (progress) => {
      const { t, jobIds } = await withJobs(1);
      await claim(t, "w1");
      const before = await dump(t);
      const reply = await heartbeat(t, jobIds[0], "w1", progress);
      expect(reply.status).toBe(400);
      expect(reply.body).toMatchObject({ code: "INVALID_ARGUMENT" });
      expect(reply.body.message).toContain("progress");
      expect(await dump(t)).toEqual(before);
    },
  );

  test("a worker that does not hold the job gets 409 and the lease is untouched", async () => {
    const { t, jobIds } = await withJobs(2);
    await claim(t, "w1");
    const before = await dump(t);
    const other = await heartbeat(t, jobIds[0], "w2", 50);
    expect(other.status).toBe(409);
    expect(other.body).toMatchObject({ code: "CONFLICT" });
    // A queued job is held by nobody.
    expect((await heartbeat(t, jobIds[1], "w1", 50)).status).toBe(409);
    expect(await dump(t)).toEqual(before);
  });
});

describe("POST /worker/jobs/complete", () => {
  test("marks the job done and settles, like updateJobStatus; a repeat is 200 with no change", async () => {
    const { t, as, jobIds } = await withJobs(1);
    const jobId = jobIds[0];
    await claim(t, "w1");
    await heartbeat(t, jobId, "w1", 70);
    const reply = await complete(t, jobId, "w1");
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({
      jobId,
      status: "done",
      changed: true,
      expiresAt: Date.now() + DAY,
    });
    expect(await as.query(api.jobs.getJob, { jobId })).toMatchObject({
      status: "done",
      r2Url: R2,
      progress: 100,
      creditStatus: "settled",
      finishedAt: Date.now(),
    });
    const after = await dump(t);
    vi.setSystemTime(Date.now() + 5000);
    const again = await complete(t, jobId, "w1");
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ changed: false, status: "done" });
    expect(await dump(t)).toEqual(after);
    expect(await ledgerKinds(t, jobId)).toEqual([
      ["reserve", -5],
      ["settle", 0],
    ]);
    // The same completion from another worker, or another video, is not a repeat.
    expect((await complete(t, jobId, "w2")).status).toBe(409);
    expect((await complete(t, jobId, "w1", "https://videos.example.com/other.mp4")).status).toBe(
      409,
    );
    expect(await dump(t)).toEqual(after);
    await checkInvariants(t);
  });

  test("an r2Url that is not https is a 400 and the job keeps running", async () => {
    const { t, jobIds } = await withJobs(1);
    await claim(t, "w1");
    const before = await dump(t);
    for (const r2Url of ["http://videos.example.com/v.mp4", "not a url", ""]) {
      const reply = await complete(t, jobIds[0], "w1", r2Url);
      expect(reply.status).toBe(400);
      expect(reply.body).toMatchObject({ code: "INVALID_ARGUMENT" });
    }
    expect(await dump(t)).toEqual(before);
  });

  test("a job an operator started by hand cannot be completed by a worker", async () => {
    const { t, jobIds } = await withJobs(1);
    await t.mutation(internal.jobs.updateJobStatus, { jobId: jobIds[0], status: "running" });
    expect((await complete(t, jobIds[0], "w1")).status).toBe(409);
    // It has no lease, so the lease sweep leaves it to the operator.
    vi.setSystemTime(Date.now() + 2 * LEASE);
    expect(await t.mutation(internal.worker.sweepExpiredLeases, {})).toEqual({
      requeued: 0,
      failed: 0,
      more: false,
    });
    expect(await jobDoc(t, jobIds[0])).toMatchObject({ status: "running" });
    await checkInvariants(t);
  });
});

describe("a job taken away from its worker", () => {
  test("an operator fails a job a worker holds: its reports are 409, refunded once", async () => {
    const { t, jobIds } = await withJobs(1);
    const jobId = jobIds[0];
    await claim(t, "w1");
    await t.mutation(internal.jobs.updateJobStatus, { jobId, status: "failed", error: "bad GPU" });
    const before = await dump(t);
    for (const reply of [
      await heartbeat(t, jobId, "w1", 50),
      await complete(t, jobId, "w1"),
      await fail(t, jobId, "w1", "x"),
    ]) {
      expect(reply.status).toBe(409);
      expect(reply.body).toMatchObject({ code: "CONFLICT" });
      expect(reply.body.message).toContain("the job is failed");
    }
    expect(await dump(t)).toEqual(before);
    expect(await ledgerKinds(t, jobId)).toEqual([
      ["reserve", -5],
      ["release", 5],
    ]);
    await checkInvariants(t);
  });
});

describe("lease expiry", () => {
  test("a late completion after the lease expired is 409, before and after the sweep", async () => {
    const { t, as, jobIds } = await withJobs(1);
    const jobId = jobIds[0];
    await claim(t, "w1");
    vi.setSystemTime(Date.now() + LEASE);
    // Lease passed, sweep not run yet: the worker has lost the job all the same.
    const before = await dump(t);
    const late = await complete(t, jobId, "w1");
    expect(late.status).toBe(409);
    expect(late.body.code).toBe("CONFLICT");
    expect(late.body.message).toContain("lease expired");
    expect((await heartbeat(t, jobId, "w1", 90)).status).toBe(409);
    expect((await fail(t, jobId, "w1", "oops", true)).status).toBe(409);
    expect(await dump(t)).toEqual(before);

    expect(await t.mutation(internal.worker.sweepExpiredLeases, {})).toEqual({
      requeued: 1,
      failed: 0,
      more: false,
    });
    expect(await as.query(api.jobs.getJob, { jobId })).toMatchObject({
      status: "queued",
      attempt: 1,
      creditStatus: "held",
      queuePosition: { position: 1, atLeast: false },
    });
    expect((await as.query(api.jobs.getJob, { jobId }))!.error).toContain("lease expired");
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 75, reserved: 5 });

    // Another worker takes it over; the first one's late reports are refused.
    expect((await claim(t, "w2")).body).toMatchObject({ jobId, attempt: 2 });
    expect((await complete(t, jobId, "w1")).status).toBe(409);
    expect((await fail(t, jobId, "w1", "late")).status).toBe(409);
    expect((await complete(t, jobId, "w2")).status).toBe(200);
    expect(await ledgerKinds(t, jobId)).toEqual([
      ["reserve", -5],
      ["settle", 0],
    ]);
    await checkInvariants(t);
  });

  test("after the attempt limit the sweep fails the job with a clear error and refunds it", async () => {
    const { t, as, jobIds } = await withJobs(1);
    const jobId = jobIds[0];
    for (let attempt = 1; attempt <= 3; attempt++) {
      expect((await claim(t, `w${attempt}`)).body).toMatchObject({ jobId, attempt });
      vi.setSystemTime(Date.now() + LEASE + 1);
      const swept = await t.mutation(internal.worker.sweepExpiredLeases, {});
      expect(swept).toEqual(
        attempt < 3
          ? { requeued: 1, failed: 0, more: false }
          : { requeued: 0, failed: 1, more: false },
      );
      await checkInvariants(t);
    }
    const job = (await as.query(api.jobs.getJob, { jobId }))!;
    expect(job).toMatchObject({ status: "failed", attempt: 3, creditStatus: "refunded" });
    expect(job.error).toBe(
      "Gave up after 3 attempts: the worker stopped reporting before its lease expired. Credits refunded.",
    );
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 80, reserved: 0 });
    expect(await ledgerKinds(t, jobId)).toEqual([
      ["reserve", -5],
      ["release", 5],
    ]);
    expect((await claim(t, "w4")).status).toBe(204);
  });

  test("a backlog of 500 expired leases drains in several bounded batches", async () => {
    vi.stubEnv("WORKER_MAX_ATTEMPTS", "1");
    const t = await setup();
    const { as, userId } = await signUp(t, "owner");
    await t.mutation(internal.credits.grantCredits, { userId, credits: 2500, note: "backlog" });
    for (let i = 0; i < 500; i++) {
      paceJobCreation(i);
      await as.mutation(api.jobs.createJob, { prompt: `job ${i}`, durationSec: 5 });
    }
    for (let i = 0; i < 500; i++) {
      await t.mutation(internal.worker.claimJob, { workerId: `gpu-${i % 7}` });
    }
    vi.setSystemTime(Date.now() + LEASE + 1);

    const first = await t.mutation(internal.worker.sweepExpiredLeases, {});
    expect(first).toEqual({ requeued: 0, failed: SWEEP_BATCH_SIZE, more: true });
    await t.finishAllScheduledFunctions(vi.runAllTimers);

    const { jobs, runs } = await t.run(async (ctx) => ({
      jobs: await ctx.db.query("jobs").collect(),
      runs: await ctx.db.system.query("_scheduled_functions").collect(),
    }));
    expect(jobs.filter((job) => job.status === "failed")).toHaveLength(500);
    expect(runs.length).toBeGreaterThanOrEqual(500 / SWEEP_BATCH_SIZE - 1);
    expect(runs.every((run) => run.state.kind === "success")).toBe(true);
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({
      credits: 2580,
      reserved: 0,
    });
    await checkInvariants(t);
  });
});

describe("POST /worker/jobs/fail", () => {
  test("retryable failures requeue until the attempt limit, then the job fails and is refunded", async () => {
    const { t, as, jobIds } = await withJobs(1);
    const jobId = jobIds[0];
    for (let attempt = 1; attempt <= 2; attempt++) {
      expect((await claim(t, "w1")).body).toMatchObject({ jobId, attempt });
      const reply = await fail(t, jobId, "w1", "CUDA out of memory", true);
      expect(reply.status).toBe(200);
      expect(reply.body).toEqual({
        jobId,
        changed: true,
        status: "queued",
        attempt,
        retrying: true,
      });
      const job = (await as.query(api.jobs.getJob, { jobId }))!;
      expect(job).toMatchObject({ status: "queued", attempt, creditStatus: "held" });
      expect(job.error).toBe(`Attempt ${attempt} of 3 failed, retrying: CUDA out of memory`);
      expect(await as.query(api.credits.getCredits, {})).toMatchObject({
        credits: 75,
        reserved: 5,
      });
      // Requeued: the worker no longer holds it.
      expect((await heartbeat(t, jobId, "w1")).status).toBe(409);
      await checkInvariants(t);
    }
    await claim(t, "w1");
    const last = await fail(t, jobId, "w1", "CUDA out of memory", true);
    expect(last.body).toEqual({
      jobId,
      changed: true,
      status: "failed",
      attempt: 3,
      retrying: false,
    });
    const job = (await as.query(api.jobs.getJob, { jobId }))!;
    expect(job).toMatchObject({ status: "failed", creditStatus: "refunded" });
    expect(job.error).toBe("Gave up after 3 attempts. Last error: CUDA out of memory");
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 80, reserved: 0 });
    // Repeating the final report changes nothing.
    const after = await dump(t);
    const again = await fail(t, jobId, "w1", "CUDA out of memory", true);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ changed: false, status: "failed" });
    expect(await dump(t)).toEqual(after);
    await checkInvariants(t);
  });

  test("a non-retryable failure fails and refunds at once", async () => {
    const { t, as, jobIds } = await withJobs(1);
    await claim(t, "w1");
    const reply = await fail(t, jobIds[0], "w1", "prompt rejected by the safety filter");
    expect(reply.body).toMatchObject({ status: "failed", attempt: 1, retrying: false });
    expect(await as.query(api.jobs.getJob, { jobId: jobIds[0] })).toMatchObject({
      status: "failed",
      error: "prompt rejected by the safety filter",
      creditStatus: "refunded",
    });
    expect(await ledgerKinds(t, jobIds[0])).toEqual([
      ["reserve", -5],
      ["release", 5],
    ]);
    await checkInvariants(t);
  });

  test("WORKER_MAX_ATTEMPTS=1 makes a retryable failure final", async () => {
    vi.stubEnv("WORKER_MAX_ATTEMPTS", "1");
    const { t, jobIds } = await withJobs(1);
    await claim(t, "w1");
    expect((await fail(t, jobIds[0], "w1", "flaky", true)).body).toMatchObject({
      status: "failed",
      retrying: false,
    });
    await checkInvariants(t);
  });

  test("an empty error is a 400", async () => {
    const { t, jobIds } = await withJobs(1);
    await claim(t, "w1");
    const reply = await fail(t, jobIds[0], "w1", "   ");
    expect(reply.status).toBe(400);
    expect(reply.body.message).toContain("error");
  });
});

describe("retries keep the original hold", () => {
  // Incident: a billing system refunded a job when its worker died and charged it again when the
  // retry ran, so a user saw a refund and a second charge for one video. Here a requeue keeps the
  // reservation: one `reserve`, and at the end exactly one `settle` or `refund`.
  test("lease loss + retryable failure + success: one reserve, one settle", async () => {
    const { t, as, jobIds } = await withJobs(1);
    const jobId = jobIds[0];
    await claim(t, "w1");
    vi.setSystemTime(Date.now() + LEASE + 1);
    await t.mutation(internal.worker.sweepExpiredLeases, {});
    expect(await ledgerKinds(t, jobId)).toEqual([["reserve", -5]]);
    await claim(t, "w2");
    await fail(t, jobId, "w2", "node preempted", true);
    expect(await ledgerKinds(t, jobId)).toEqual([["reserve", -5]]);
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 75, reserved: 5 });
    expect((await claim(t, "w3")).body).toMatchObject({ jobId, attempt: 3 });
    expect((await complete(t, jobId, "w3")).status).toBe(200);
    expect(await ledgerKinds(t, jobId)).toEqual([
      ["reserve", -5],
      ["settle", 0],
    ]);
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 75, reserved: 0 });
    await checkInvariants(t);
  });

  test("retryable failure + lease losses until the limit: one reserve, one refund", async () => {
    const { t, as, jobIds } = await withJobs(1);
    const jobId = jobIds[0];
    await claim(t, "w1");
    await fail(t, jobId, "w1", "driver crash", true);
    for (const worker of ["w2", "w3"]) {
      await claim(t, worker);
      vi.setSystemTime(Date.now() + LEASE + 1);
      await t.mutation(internal.worker.sweepExpiredLeases, {});
    }
    expect(await ledgerKinds(t, jobId)).toEqual([
      ["reserve", -5],
      ["release", 5],
    ]);
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 80, reserved: 0 });
    await checkInvariants(t);
  });
});

describe("reports are fenced by attempt", () => {
  test("a late report from attempt 1 after the same worker re-claimed the job is 409 and changes nothing", async () => {
    const { t, as, jobIds } = await withJobs(1);
    const jobId = jobIds[0];
    expect((await claim(t, "w1")).body).toMatchObject({ jobId, attempt: 1 });
    const first = reportsFor(t, jobId, "w1", 1);
    expect((await first.fail(true)).body).toMatchObject({ status: "queued", retrying: true });
    expect((await claim(t, "w1")).body).toMatchObject({ jobId, attempt: 2 });
    const before = await dump(t);
    for (const reply of [
      await first.heartbeat(),
      await first.complete(),
      await first.fail(),
      await first.fail(true),
    ]) {
      expect(reply.status).toBe(409);
      expect(reply.body).toEqual({
        code: "CONFLICT",
        message: "This report is for attempt 1, but the job is running attempt 2. Drop it.",
      });
    }
    expect(await dump(t)).toEqual(before);
    // Attempt 2's own reports are accepted, with or without `attempt`.
    const second = reportsFor(t, jobId, "w1", 2);
    expect((await second.heartbeat()).status).toBe(200);
    expect((await heartbeat(t, jobId, "w1", 60)).status).toBe(200);
    expect((await second.complete()).body).toMatchObject({ changed: true, status: "done" });
    expect(await as.query(api.jobs.getJob, { jobId })).toMatchObject({
      status: "done",
      attempt: 2,
      creditStatus: "settled",
    });
    await checkInvariants(t);
  });

  test("a repeated completion is changed:false for the attempt that finished, 409 for an older one", async () => {
    const { t, jobIds } = await withJobs(1);
    const jobId = jobIds[0];
    await claim(t, "w1");
    await reportsFor(t, jobId, "w1", 1).fail(true);
    await claim(t, "w1");
    expect((await reportsFor(t, jobId, "w1", 2).complete()).body).toMatchObject({ changed: true });
    const after = await dump(t);
    expect((await reportsFor(t, jobId, "w1", 2).complete()).body).toMatchObject({
      changed: false,
    });
    expect((await complete(t, jobId, "w1")).body).toMatchObject({ changed: false });
    const stale = await reportsFor(t, jobId, "w1", 1).complete();
    expect(stale.status).toBe(409);
    expect(stale.body.message).toBe(
      "This report is for attempt 1, but the job is done after attempt 2. Drop it.",
    );
    expect(await dump(t)).toEqual(after);
    expect(await ledgerKinds(t, jobId)).toEqual([
      ["reserve", -5],
      ["settle", 0],
    ]);
  });

  test("a repeated final failure is changed:false for the attempt that failed, 409 for an older one", async () => {
    const { t, jobIds } = await withJobs(1);
    const jobId = jobIds[0];
    await claim(t, "w1");
    await reportsFor(t, jobId, "w1", 1).fail(true);
    await claim(t, "w1");
    expect((await reportsFor(t, jobId, "w1", 2).fail()).body).toMatchObject({
      changed: true,
      status: "failed",
      attempt: 2,
    });
    const after = await dump(t);
    expect((await reportsFor(t, jobId, "w1", 2).fail()).body).toMatchObject({
      changed: false,
      status: "failed",
      attempt: 2,
    });
    expect((await fail(t, jobId, "w1", "boom")).body).toMatchObject({ changed: false });
    const stale = await reportsFor(t, jobId, "w1", 1).fail(true);
    expect(stale.status).toBe(409);
    expect(stale.body.message).toContain("attempt 1, but the job is failed after attempt 2");
    expect(await dump(t)).toEqual(after);
    expect(await ledgerKinds(t, jobId)).toEqual([
      ["reserve", -5],
      ["release", 5],
    ]);
  });

  test("a report for an attempt that has not happened yet is 409 too", async () => {
    const { t, jobIds } = await withJobs(2);
    await claim(t, "w1");
    const before = await dump(t);
    const ahead = reportsFor(t, jobIds[0], "w1", 2);
    for (const reply of [await ahead.heartbeat(), await ahead.complete(), await ahead.fail()]) {
      expect(reply.status).toBe(409);
      expect(reply.body).toEqual({
        code: "CONFLICT",
        message: "This report is for attempt 2, but the job is running attempt 1. Drop it.",
      });
    }
    // A job that was never claimed names no attempt.
    const queued = await reportsFor(t, jobIds[1], "w1", 1).complete();
    expect(queued.body.message).toBe(
      "This report is for attempt 1, but the job is queued and was never claimed. Drop it.",
    );
    expect(await dump(t)).toEqual(before);
  });

  test.each([0, -1, 1.5, Number.MAX_SAFE_INTEGER + 2])(
    "attempt %s is a 400 on every report and changes nothing",
    async (attempt) => {
      const { t, jobIds } = await withJobs(1);
      await claim(t, "w1");
      const before = await dump(t);
      const bad = reportsFor(t, jobIds[0], "w1", attempt);
      for (const reply of [await bad.heartbeat(), await bad.complete(), await bad.fail()]) {
        expect(reply.status).toBe(400);
        expect(reply.body.code).toBe("INVALID_ARGUMENT");
        expect(reply.body.message).toContain("attempt");
      }
      expect(await dump(t)).toEqual(before);
    },
  );

  test("the internal mutations take the same fence", async () => {
    const { t, jobIds } = await withJobs(1);
    const jobId = jobIds[0];
    await t.mutation(internal.worker.claimJob, { workerId: "w1" });
    await t.mutation(internal.worker.failJob, {
      jobId,
      workerId: "w1",
      attempt: 1,
      error: "x",
      retryable: true,
    });
    await t.mutation(internal.worker.claimJob, { workerId: "w1" });
    await expectCode(
      t.mutation(internal.worker.heartbeat, { jobId, workerId: "w1", attempt: 1 }),
      "CONFLICT",
    );
    await expectCode(
      t.mutation(internal.worker.completeJob, { jobId, workerId: "w1", attempt: 1, r2Url: R2 }),
      "CONFLICT",
    );
    await expectCode(
      t.mutation(internal.worker.failJob, { jobId, workerId: "w1", attempt: 1, error: "late" }),
      "CONFLICT",
    );
    expect(
      await t.mutation(internal.worker.completeJob, {
        jobId,
        workerId: "w1",
        attempt: 2,
        r2Url: R2,
      }),
    ).toMatchObject({ changed: true });
  });
});

describe("a claim never hands out a job past its queue timeout or out of attempts", () => {
  test("a job past QUEUE_TIMEOUT_MS is not claimed before the sweep runs; the sweep refunds it", async () => {
    const { t, as, jobIds } = await withJobs(1);
    const stale = jobIds[0];
    vi.setSystemTime(Date.now() + DAY - 1);
    const fresh = await as.mutation(api.jobs.createJob, { prompt: "newer", durationSec: 10 });
    vi.setSystemTime(Date.now() + 1);
    // `stale` is exactly QUEUE_TIMEOUT_MS old, the sweep has not run: the claim skips it.
    const reply = await claim(t, "w1");
    expect(reply.status).toBe(200);
    expect(reply.body.jobId).toBe(fresh);
    expect(await jobDoc(t, stale)).toMatchObject({ status: "queued", creditStatus: "held" });
    expect((await claim(t, "w2")).status).toBe(204);
    expect(await jobDoc(t, stale)).toMatchObject({ status: "queued", creditStatus: "held" });
    // The sweep (every minute) fails and refunds it.
    expect(await t.mutation(internal.worker.sweepQueueTimeouts, {})).toEqual({
      failed: 1,
      more: false,
    });
    const job = (await as.query(api.jobs.getJob, { jobId: stale }))!;
    expect(job).toMatchObject({ status: "failed", creditStatus: "refunded" });
    expect(job.error).toBe(
      "Queue timeout: no worker finished the job within 24 h of its creation. Credits refunded.",
    );
    expect(await ledgerKinds(t, stale)).toEqual([
      ["reserve", -5],
      ["release", 5],
    ]);
    await checkInvariants(t);
  });

  test("a requeued job that timed out is not claimed again either", async () => {
    vi.stubEnv("QUEUE_TIMEOUT_MS", "60000");
    const { t, jobIds } = await withJobs(1);
    expect((await claim(t, "w1")).body).toMatchObject({ attempt: 1 });
    vi.setSystemTime(Date.now() + 2 * 60_000);
    expect((await reportsFor(t, jobIds[0], "w1", 1).fail(true)).body).toMatchObject({
      status: "queued",
    });
    expect((await claim(t, "w2")).status).toBe(204);
    expect(await jobDoc(t, jobIds[0])).toMatchObject({ status: "queued", attempt: 1 });
    expect(await t.mutation(internal.worker.sweepQueueTimeouts, {})).toEqual({
      failed: 1,
      more: false,
    });
    expect(await jobDoc(t, jobIds[0])).toMatchObject({
      status: "failed",
      creditStatus: "refunded",
    });
    await checkInvariants(t);
  });

  test("WORKER_MAX_ATTEMPTS lowered from 3 to 2 after a requeue: the claim fails and refunds the job", async () => {
    vi.stubEnv("WORKER_MAX_ATTEMPTS", "3");
    const { t, as, jobIds } = await withJobs(2);
    const [tired, next] = jobIds;
    for (const attempt of [1, 2]) {
      expect((await claim(t, "w1")).body).toMatchObject({ jobId: tired, attempt, maxAttempts: 3 });
      expect((await reportsFor(t, tired, "w1", attempt).fail(true)).body).toMatchObject({
        status: "queued",
      });
    }
    vi.stubEnv("WORKER_MAX_ATTEMPTS", "2");
    const reply = await claim(t, "w1");
    expect(reply.body).toMatchObject({ jobId: next, attempt: 1, maxAttempts: 2 });
    const job = (await as.query(api.jobs.getJob, { jobId: tired }))!;
    expect(job).toMatchObject({ status: "failed", attempt: 2, creditStatus: "refunded" });
    expect(job.error).toBe(
      "Gave up after 2 attempts: the limit is now 2 attempts. Credits refunded.",
    );
    expect(await ledgerKinds(t, tired)).toEqual([
      ["reserve", -5],
      ["release", 5],
    ]);
    expect((await claim(t, "w2")).status).toBe(204);
    await checkInvariants(t);
  });

  test("out-of-attempts jobs anywhere in the queue are never handed out", async () => {
    const { t, jobIds } = await withJobs(4);
    // Jobs 1 and 3 use up two attempts each; jobs 0 and 2 are fresh.
    await t.run(async (ctx) => {
      for (const i of [1, 3]) {
        await ctx.db.patch("jobs", jobIds[i], { attempt: 2 });
      }
    });
    vi.stubEnv("WORKER_MAX_ATTEMPTS", "2");
    const handedOut = [];
    for (let i = 0; i < 3; i++) {
      const reply = await claim(t, `w${i}`);
      if (reply.status === 200) handedOut.push(reply.body.jobId);
    }
    expect(handedOut).toEqual([jobIds[0], jobIds[2]]);
    const jobs = await dump(t);
    expect(jobs.jobs.map((job) => job.status)).toEqual(["running", "failed", "running", "failed"]);
    await checkInvariants(t);
  });

  test(`one claim fails at most ${CLAIM_MAX_SKIPS} out-of-attempts jobs, then 204; the next claim carries on`, async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "owner");
    await t.mutation(internal.credits.grantCredits, { userId, credits: 500, note: "backlog" });
    const count = CLAIM_MAX_SKIPS + 10;
    const ids: Id<"jobs">[] = [];
    for (let i = 0; i < count + 1; i++) {
      paceJobCreation(i);
      ids.push(await as.mutation(api.jobs.createJob, { prompt: `job ${i}`, durationSec: 5 }));
      vi.setSystemTime(Date.now() + 1);
    }
    await t.run(async (ctx) => {
      for (const id of ids.slice(0, count)) {
        await ctx.db.patch("jobs", id, { attempt: 1 });
      }
    });
    vi.stubEnv("WORKER_MAX_ATTEMPTS", "1");
    expect((await claim(t, "w1")).status).toBe(204);
    const statuses = async () => (await dump(t)).jobs.map((job) => job.status);
    expect((await statuses()).filter((s) => s === "failed")).toHaveLength(CLAIM_MAX_SKIPS);
    const reply = await claim(t, "w1");
    expect(reply.body).toMatchObject({ jobId: ids[count], attempt: 1 });
    expect((await statuses()).filter((s) => s === "failed")).toHaveLength(count);
    await checkInvariants(t);
  });
});

describe("queue timeout", () => {
  test("a job nobody claimed within 24 h fails with a clear error and is refunded", async () => {
    const { t, as, jobIds } = await withJobs(1);
    vi.setSystemTime(Date.now() + DAY - 1000);
    const fresh = await as.mutation(api.jobs.createJob, { prompt: "newer", durationSec: 10 });
    expect(await t.mutation(internal.worker.sweepQueueTimeouts, {})).toEqual({
      failed: 0,
      more: false,
    });
    vi.setSystemTime(Date.now() + 1000);
    expect(await t.mutation(internal.worker.sweepQueueTimeouts, {})).toEqual({
      failed: 1,
      more: false,
    });
    const job = (await as.query(api.jobs.getJob, { jobId: jobIds[0] }))!;
    expect(job).toMatchObject({ status: "failed", creditStatus: "refunded" });
    expect(job.error).toBe(
      "Queue timeout: no worker finished the job within 24 h of its creation. Credits refunded.",
    );
    expect(await as.query(api.jobs.getJob, { jobId: fresh })).toMatchObject({
      status: "queued",
      queuePosition: { position: 1, atLeast: false },
    });
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 70, reserved: 10 });
    await checkInvariants(t);
  });

  test("QUEUE_TIMEOUT_MS configures it and a backlog drains in batches", async () => {
    vi.stubEnv("QUEUE_TIMEOUT_MS", String(60 * 60 * 1000));
    const t = await setup();
    const { as, userId } = await signUp(t, "owner");
    await t.mutation(internal.credits.grantCredits, { userId, credits: 1250, note: "backlog" });
    for (let i = 0; i < 250; i++) {
      paceJobCreation(i);
      await as.mutation(api.jobs.createJob, { prompt: `job ${i}`, durationSec: 5 });
    }
    vi.setSystemTime(Date.now() + 60 * 60 * 1000);
    expect(await t.mutation(internal.worker.sweepQueueTimeouts, {})).toEqual({
      failed: SWEEP_BATCH_SIZE,
      more: true,
    });
    await t.finishAllScheduledFunctions(vi.runAllTimers);
    const jobs = await t.run(async (ctx) => await ctx.db.query("jobs").collect());
    expect(jobs.every((job) => job.status === "failed")).toBe(true);
    expect(jobs[0].error).toContain("within 1 h");
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({
      credits: 1330,
      reserved: 0,
    });
    await checkInvariants(t);
  });
});

describe("malformed requests are 400/404 JSON, never 500", () => {
  test.each([
    ["/worker/claim", "{not json", "valid JSON"],
    ["/worker/claim", "", "valid JSON"],
    ["/worker/claim", "[]", "JSON object"],
    ["/worker/claim", "null", "JSON object"],
    ["/worker/claim", "{}", "workerId is required"],
    ["/worker/claim", '{"workerId":42}', "workerId must be a string"],
    ["/worker/claim", '{"workerId":""}', "workerId"],
    ["/worker/claim", '{"workerId":"has space"}', "workerId"],
    ["/worker/jobs/heartbeat", '{"workerId":"w1"}', "jobId is required"],
    ["/worker/jobs/heartbeat", '{"jobId":{},"workerId":"w1"}', "jobId must be a string"],
    ["/worker/jobs/heartbeat", '{"jobId":"x","workerId":"w1","progress":"50"}', "progress"],
    ["/worker/jobs/complete", '{"jobId":"x","workerId":"w1"}', "r2Url is required"],
    ["/worker/jobs/complete", '{"jobId":"x","workerId":"w1","r2Url":7}', "r2Url"],
    ["/worker/jobs/fail", '{"jobId":"x","workerId":"w1"}', "error is required"],
    [
      "/worker/jobs/fail",
      '{"jobId":"x","workerId":"w1","error":"e","retryable":"yes"}',
      "retryable",
    ],
  ])("%s %s → 400", async (path, raw, message) => {
    const t = await setup();
    const reply = await post(t, path, undefined, { raw });
    expect(reply.status).toBe(400);
    expect(reply.contentType).toBe("application/json");
    expect(reply.body.code).toBe("INVALID_ARGUMENT");
    expect(reply.body.message).toContain(message);
  });

  test("unknown, malformed and other-table job ids are 404 on every job route", async () => {
    const { t, userId, jobIds } = await withJobs(1);
    await claim(t, "w1");
    const deleted = await t.run(async (ctx) => {
      const { _id, _creationTime, ...copy } = (await ctx.db.get("jobs", jobIds[0]))!;
      const id = await ctx.db.insert("jobs", copy);
      await ctx.db.delete("jobs", id);
      return id;
    });
    const before = await dump(t);
    for (const jobId of [deleted, "not-an-id", userId]) {
      for (const reply of [
        await heartbeat(t, jobId, "w1", 5),
        await complete(t, jobId, "w1"),
        await fail(t, jobId, "w1", "x"),
      ]) {
        expect(reply.status).toBe(404);
        expect(reply.body).toEqual({ code: "NOT_FOUND", message: "Job not found." });
      }
    }
    expect(await dump(t)).toEqual(before);
  });

  test("an oversized body is a 413", async () => {
    const t = await setup();
    const reply = await post(t, "/worker/claim", { workerId: "w1", pad: "x".repeat(70_000) });
    expect(reply.status).toBe(413);
    expect(reply.body.code).toBe("PAYLOAD_TOO_LARGE");
  });

  test("other methods are not routed", async () => {
    const t = await setup();
    const response = await t.fetch("/worker/claim", { method: "GET" });
    expect(response.status).toBe(404);
  });
});

test("both sweeps are registered as crons every minute", () => {
  const registered = (
    crons as unknown as { crons: Record<string, { name: string; schedule: unknown }> }
  ).crons;
  expect(registered["sweep expired worker leases"]).toMatchObject({
    name: "worker:sweepExpiredLeases",
    schedule: { type: "interval", minutes: 1 },
  });
  expect(registered["sweep queue timeouts"]).toMatchObject({
    name: "worker:sweepQueueTimeouts",
    schedule: { type: "interval", minutes: 1 },
  });
});
