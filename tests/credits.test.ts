import { describe, expect, test } from "vitest";
import { api, internal } from "../convex/_generated/api";
import { checkInvariants } from "./support/invariants";
import type { Id } from "../convex/_generated/dataModel";
import { expectCode, identityFor, setup, signUp, type TestConvex } from "./support/setup";

const R2 = "https://videos.example.com/v.mp4";

async function ledgerOf(t: Awaited<ReturnType<typeof setup>>, jobId?: string) {
  return await t.run(async (ctx) => {
    const rows = await ctx.db.query("ledger").collect();
    return rows
      .filter((row) => jobId === undefined || row.jobId === jobId)
      .map((row) => [row.kind, row.delta]);
  });
}

describe("getCredits", () => {
  test("returns the caller's balance, reserved credits and plan", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "u1");
    expect(await as.query(api.credits.getCredits, {})).toEqual({
      credits: 80,
      reserved: 0,
      expiring: null,
      plan: { name: "starter", monthlyCredits: 80, price: 1000, currency: "GBP", markup: 85 },
    });
    await as.mutation(api.jobs.createJob, { prompt: "a cat", durationSec: 10 });
    expect(await as.query(api.credits.getCredits, { userId })).toMatchObject({
      credits: 70,
      reserved: 10,
    });
  });

  test("another user's id is FORBIDDEN, no identity UNAUTHENTICATED, no user row NOT_FOUND", async () => {
    const t = await setup();
    const { userId } = await signUp(t, "u1");
    const { as: stranger } = await signUp(t, "u2");
    await expectCode(stranger.query(api.credits.getCredits, { userId }), "FORBIDDEN");
    await expectCode(t.query(api.credits.getCredits, {}), "UNAUTHENTICATED");
    await expectCode(
      t.withIdentity(identityFor("u3")).query(api.credits.getCredits, {}),
      "NOT_FOUND",
    );
  });
});

describe("reserveCredits", () => {
  /** A job row without its hold, as if created outside `createJob` (only tests can do this). */
  async function jobWithoutHold(t: TestConvex, userId: Id<"users">, durationSec: number) {
    return await t.run(
      async (ctx) =>
        await ctx.db.insert("jobs", {
          userId,
          prompt: "x",
          durationSec,
          creditsUsed: durationSec,
          status: "queued",
          creditStatus: "held",
          createdAt: Date.now(),
        }),
    );
  }

  test("holds the job's price atomically and writes a reserve row", async () => {
    const t = await setup();
    const { userId } = await signUp(t, "u1");
    const jobId = await jobWithoutHold(t, userId, 10);
    expect(
      await t.mutation(internal.credits.reserveCredits, { userId, credits: 10, jobId }),
    ).toEqual({ ok: true, balance: 70 });
    expect(await ledgerOf(t)).toEqual([
      ["grant", 80],
      ["reserve", -10],
    ]);
    await checkInvariants(t);
  });

  test("insufficient balance changes nothing and says so", async () => {
    const t = await setup();
    const { userId } = await signUp(t, "u1");
    await t.mutation(internal.credits.grantCredits, { userId, credits: -75, note: "x" });
    const jobId = await jobWithoutHold(t, userId, 10);
    expect(
      await t.mutation(internal.credits.reserveCredits, { userId, credits: 10, jobId }),
    ).toEqual({ ok: false, reason: "INSUFFICIENT_CREDITS", balance: 5 });
    expect(await ledgerOf(t)).toEqual([
      ["grant", 80],
      ["adjustment", -75],
    ]);
  });

  test("a hold exists only with its job: no jobId is refused and nothing is held", async () => {
    const t = await setup();
    const { userId } = await signUp(t, "u1");
    await expect(
      t.mutation(internal.credits.reserveCredits, { userId, credits: 30 } as never),
    ).rejects.toThrow(/jobId/);
    expect(await ledgerOf(t)).toEqual([["grant", 80]]);
    await checkInvariants(t);
  });

  test.each([0, -5, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 11])(
    "credits %s (not the job's price) is INVALID_ARGUMENT",
    async (credits) => {
      const t = await setup();
      const { userId } = await signUp(t, "u1");
      const jobId = await jobWithoutHold(t, userId, 10);
      await expectCode(
        t.mutation(internal.credits.reserveCredits, { userId, credits, jobId }),
        "INVALID_ARGUMENT",
      );
    },
  );

  test("a job reserves once: reserving again for it is a CONFLICT; another user's job is refused", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "u1");
    const { userId: other } = await signUp(t, "u2");
    const jobId = await as.mutation(api.jobs.createJob, { prompt: "x", durationSec: 5 });
    await expectCode(
      t.mutation(internal.credits.reserveCredits, { userId, credits: 5, jobId }),
      "CONFLICT",
    );
    await expectCode(
      t.mutation(internal.credits.reserveCredits, { userId: other, credits: 5, jobId }),
      "INVALID_ARGUMENT",
    );
    await checkInvariants(t);
  });
});

describe("settleCredits / refundCredits", () => {
  async function jobIn(status: "queued" | "running" | "done") {
    const t = await setup();
    const { as, userId } = await signUp(t, "u1");
    const jobId = await as.mutation(api.jobs.createJob, { prompt: "x", durationSec: 15 });
    if (status !== "queued")
      await t.mutation(internal.jobs.updateJobStatus, { jobId, status: "running" });
    if (status === "done")
      await t.mutation(internal.jobs.updateJobStatus, { jobId, status: "done", r2Url: R2 });
    return { t, as, userId, jobId };
  }

  test("double settle, refund after settle: nothing changes", async () => {
    const { t, as, jobId } = await jobIn("done");
    expect(await t.mutation(internal.credits.settleCredits, { jobId })).toEqual({
      changed: false,
      creditStatus: "settled",
    });
    expect(await t.mutation(internal.credits.refundCredits, { jobId })).toEqual({
      changed: false,
      creditStatus: "settled",
    });
    expect(await ledgerOf(t, jobId)).toEqual([
      ["reserve", -15],
      ["settle", 0],
    ]);
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 65, reserved: 0 });
    await checkInvariants(t);
  });

  test("refund returns exactly the reservation and fails the job; double refund and settle after refund change nothing", async () => {
    const { t, as, jobId } = await jobIn("running");
    expect(await t.mutation(internal.credits.refundCredits, { jobId })).toEqual({
      changed: true,
      creditStatus: "refunded",
    });
    expect(await t.mutation(internal.credits.refundCredits, { jobId })).toEqual({
      changed: false,
      creditStatus: "refunded",
    });
    expect(await t.mutation(internal.credits.settleCredits, { jobId })).toEqual({
      changed: false,
      creditStatus: "refunded",
    });
    expect(await as.query(api.jobs.getJob, { jobId })).toMatchObject({
      status: "failed",
      creditStatus: "refunded",
    });
    expect(await ledgerOf(t, jobId)).toEqual([
      ["reserve", -15],
      ["release", 15],
    ]);
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 80, reserved: 0 });
    await checkInvariants(t);
  });

  test("refunding a queued job fails it", async () => {
    const { t, as, jobId } = await jobIn("queued");
    await t.mutation(internal.credits.refundCredits, { jobId });
    expect(await as.query(api.jobs.getJob, { jobId })).toMatchObject({ status: "failed" });
    await checkInvariants(t);
  });

  test("a job that is not done cannot be settled", async () => {
    const { t, jobId } = await jobIn("running");
    await expectCode(t.mutation(internal.credits.settleCredits, { jobId }), "INVALID_TRANSITION");
    await checkInvariants(t);
  });
});

describe("grantCredits and listLedger", () => {
  test("grant writes an adjustment row; a removal never goes below zero", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "u1");
    expect(
      await t.mutation(internal.credits.grantCredits, {
        userId,
        credits: 20,
        note: "support ticket 12",
      }),
    ).toEqual({ balance: 100 });
    expect(
      await t.mutation(internal.credits.grantCredits, { userId, credits: -30, note: "correction" }),
    ).toEqual({ balance: 70 });
    await expectCode(
      t.mutation(internal.credits.grantCredits, { userId, credits: -71, note: "too much" }),
      "INSUFFICIENT_CREDITS",
    );
    await expectCode(
      t.mutation(internal.credits.grantCredits, { userId, credits: 0, note: "x" }),
      "INVALID_ARGUMENT",
    );
    // A balance stays a safe integer: a grant that would pass 2^53 - 1 is refused.
    await expectCode(
      t.mutation(internal.credits.grantCredits, {
        userId,
        credits: Number.MAX_SAFE_INTEGER - 69,
        note: "too much",
      }),
      "INVALID_ARGUMENT",
    );
    expect(
      await t.mutation(internal.credits.grantCredits, {
        userId,
        credits: Number.MAX_SAFE_INTEGER - 70,
        note: "up to the limit",
      }),
    ).toEqual({ balance: Number.MAX_SAFE_INTEGER });
    await t.mutation(internal.credits.grantCredits, {
      userId,
      credits: -(Number.MAX_SAFE_INTEGER - 70),
      note: "and back",
    });
    await expectCode(
      t.mutation(internal.credits.grantCredits, { userId, credits: 1, note: "  " }),
      "INVALID_ARGUMENT",
    );
    const page = await as.query(api.credits.listLedger, {
      paginationOpts: { numItems: 10, cursor: null },
    });
    expect(page.page.map((row) => [row.kind, row.delta, row.balanceAfter, row.note])).toEqual([
      // Removed in spending order: the huge lot is the newest, so the older lots go first.
      ["adjustment", -(Number.MAX_SAFE_INTEGER - 140), 70, "and back"],
      ["adjustment", -20, Number.MAX_SAFE_INTEGER - 70, "and back"],
      ["adjustment", -50, Number.MAX_SAFE_INTEGER - 50, "and back"],
      ["adjustment", Number.MAX_SAFE_INTEGER - 70, Number.MAX_SAFE_INTEGER, "up to the limit"],
      ["adjustment", -30, 70, "correction"],
      ["adjustment", 20, 100, "support ticket 12"],
      ["grant", 80, 80, "Sign-up grant (starter plan)"],
    ]);
    await checkInvariants(t);
  });

  test("listLedger shows only the caller's rows, paginated newest first", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "u1");
    const { as: other } = await signUp(t, "u2");
    for (let i = 1; i <= 5; i++) {
      await t.mutation(internal.credits.grantCredits, { userId, credits: i, note: `n${i}` });
    }
    const first = await as.query(api.credits.listLedger, {
      paginationOpts: { numItems: 4, cursor: null },
    });
    const second = await as.query(api.credits.listLedger, {
      paginationOpts: { numItems: 4, cursor: first.continueCursor },
    });
    expect(first.page.map((r) => r.note)).toEqual(["n5", "n4", "n3", "n2"]);
    expect(second.page.map((r) => r.note)).toEqual(["n1", "Sign-up grant (starter plan)"]);
    expect(second.isDone).toBe(true);
    const others = await other.query(api.credits.listLedger, {
      paginationOpts: { numItems: 10, cursor: null },
    });
    expect(others.page).toHaveLength(1);
    await expectCode(
      t.query(api.credits.listLedger, { paginationOpts: { numItems: 10, cursor: null } }),
      "UNAUTHENTICATED",
    );
  });
});
