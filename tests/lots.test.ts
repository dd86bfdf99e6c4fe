import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Doc, Id } from "../convex/_generated/dataModel";
import { addMonthsUtc } from "../convex/model/calendar";
import { EXPIRE_BATCH_SIZE, grantLot } from "../convex/model/lots";
import { checkInvariants } from "./support/invariants";
import {
  expectCode,
  finishDueScheduledFunctions,
  setup,
  signUp,
  type TestConvex,
} from "./support/setup";

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;
const START = Date.parse("2026-03-10T12:00:00Z");
const R2 = "https://videos.example.com/v.mp4";

beforeEach(() => {
  vi.useFakeTimers({ now: START });
});
afterEach(() => {
  vi.useRealTimers();
});

async function lotsOf(t: TestConvex, userId: Id<"users">) {
  return await t.run(async (ctx) =>
    (await ctx.db.query("creditLots").collect()).filter((lot) => lot.userId === userId),
  );
}
async function jobDoc(t: TestConvex, jobId: Id<"jobs">) {
  return (await t.run(async (ctx) => await ctx.db.get("jobs", jobId)))!;
}
async function grant(t: TestConvex, userId: Id<"users">, credits: number, expiresAt?: number) {
  await t.mutation(internal.credits.grantCredits, { userId, credits, note: "test", expiresAt });
}
/** Moves the clock and runs what is due then (the lots' scheduled expiries). */
async function advance(t: TestConvex, ms: number) {
  vi.advanceTimersByTime(ms);
  await finishDueScheduledFunctions(t);
}
const sourceOf = (lots: Doc<"creditLots">[], lotId: Id<"creditLots">) =>
  lots.find((lot) => lot._id === lotId)!;

describe("calendar months", () => {
  test.each([
    ["2025-01-31T09:30:00.000Z", "2025-02-28T09:30:00.000Z"],
    ["2024-01-31T09:30:00.000Z", "2024-02-29T09:30:00.000Z"],
    ["2025-01-28T00:00:00.000Z", "2025-02-28T00:00:00.000Z"],
    ["2025-03-31T23:59:59.999Z", "2025-04-30T23:59:59.999Z"],
    ["2025-12-31T12:00:00.000Z", "2026-01-31T12:00:00.000Z"],
    ["2025-02-28T08:00:00.000Z", "2025-03-28T08:00:00.000Z"],
  ])("%s + 1 month = %s (UTC, same time of day, day clamped)", (from, to) => {
    expect(new Date(addMonthsUtc(Date.parse(from), 1)).toISOString()).toBe(to);
  });
});

describe("spending order", () => {
  test("soonest-expiring first, never-expiring last; ties: promotional before paid, then oldest", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "u1"); // welcome 80, never expires
    await grant(t, userId, 5, START + 10 * DAY);
    await grant(t, userId, 5, START + 2 * DAY);
    await grant(t, userId, 5); // never expires, newer than the welcome lot
    const jobId = await as.mutation(api.jobs.createJob, { prompt: "x", durationSec: 15 });
    const lots = await lotsOf(t, userId);
    const taken = (await jobDoc(t, jobId)).allocations!.map((a) => {
      const lot = sourceOf(lots, a.lotId);
      return [lot.source, lot.expiresAt ?? null, a.credits];
    });
    expect(taken).toEqual([
      ["adjustment", START + 2 * DAY, 5],
      ["adjustment", START + 10 * DAY, 5],
      ["welcome", null, 5],
    ]);
    // The job spans three lots: one reserve row per lot, each naming it.
    const rows = await t.run(async (ctx) =>
      (await ctx.db.query("ledger").collect()).filter((r) => r.jobId === jobId),
    );
    expect(rows.map((r) => [r.kind, r.delta, r.reservedDelta])).toEqual([
      ["reserve", -5, 5],
      ["reserve", -5, 5],
      ["reserve", -5, 5],
    ]);
    expect(new Set(rows.map((r) => r.lotId)).size).toBe(3);
    await checkInvariants(t);
  });

  test("a negative adjustment removes available credits in spending order, never below zero", async () => {
    const t = await setup();
    const { userId } = await signUp(t, "u1");
    await grant(t, userId, 10, START + DAY);
    await grant(t, userId, -15);
    const lots = await lotsOf(t, userId);
    expect(lots.map((l) => [l.source, l.remaining, l.status])).toEqual([
      ["welcome", 75, "active"],
      ["adjustment", 0, "spent"],
    ]);
    await expectCode(
      t.mutation(internal.credits.grantCredits, { userId, credits: -76, note: "x" }),
      "INSUFFICIENT_CREDITS",
    );
    await checkInvariants(t);
  });
});

describe("expiry", () => {
  test("runs on time, takes only unheld credits, and shows in the balance the moment it happens", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "u1");
    await grant(t, userId, 20, START + HOUR);
    const jobId = await as.mutation(api.jobs.createJob, { prompt: "x", durationSec: 5 });
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({
      credits: 95,
      reserved: 5,
      expiring: { credits: 15, at: START + HOUR },
    });
    await advance(t, HOUR - 1);
    expect((await as.query(api.credits.getCredits, {})).credits).toBe(95);
    await advance(t, 1);
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({
      credits: 80,
      reserved: 5,
      expiring: null,
    });
    const lot = (await lotsOf(t, userId)).find((l) => l.source === "adjustment")!;
    expect(lot).toMatchObject({ status: "expired", remaining: 5, held: 5 });
    const expiries = await as.query(api.credits.listLedger, {
      paginationOpts: { numItems: 10, cursor: null },
    });
    expect(expiries.page[0]).toMatchObject({ kind: "expire", delta: -15, lotId: lot._id });
    // A stale or duplicate scheduled run changes nothing.
    expect(
      await t.mutation(internal.credits.expireLot, { lotId: lot._id, expiresAt: START + HOUR }),
    ).toBe(false);
    expect((await jobDoc(t, jobId)).creditStatus).toBe("held");
    await checkInvariants(t);
  });

  test("settle after expiry consumes the held credits of the expired lot", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "u1");
    await grant(t, userId, 10, START + HOUR);
    const jobId = await as.mutation(api.jobs.createJob, { prompt: "x", durationSec: 10 });
    await advance(t, 2 * HOUR);
    await t.mutation(internal.jobs.updateJobStatus, { jobId, status: "running" });
    await t.mutation(internal.jobs.updateJobStatus, { jobId, status: "done", r2Url: R2 });
    const lot = (await lotsOf(t, userId)).find((l) => l.source === "adjustment")!;
    expect(lot).toMatchObject({ status: "expired", remaining: 0, held: 0 });
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({ credits: 80, reserved: 0 });
    await checkInvariants(t);
  });

  test("a hold released after its lot expired comes back as a returned lot for 7 more days", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "u1");
    await grant(t, userId, 10, START + HOUR);
    const first = await as.mutation(api.jobs.createJob, { prompt: "a", durationSec: 5 });
    const second = await as.mutation(api.jobs.createJob, { prompt: "b", durationSec: 5 });
    await advance(t, 2 * HOUR);
    await as.mutation(api.jobs.cancelJob, { jobId: first });
    await as.mutation(api.jobs.cancelJob, { jobId: second });
    const returned = (await lotsOf(t, userId)).filter((l) => l.source === "returned");
    // Both releases of the same UTC day join one lot, expiring 7 days after that day ends.
    const dayEnd = Math.floor((START + 2 * HOUR) / DAY) * DAY + DAY;
    expect(returned).toMatchObject([
      { granted: 10, remaining: 10, held: 0, status: "active", expiresAt: dayEnd + 7 * DAY },
    ]);
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({
      credits: 90,
      expiring: { credits: 10, at: dayEnd + 7 * DAY },
    });
    await advance(t, 9 * DAY);
    expect((await as.query(api.credits.getCredits, {})).credits).toBe(80);
    await checkInvariants(t);
  });

  test("the sweep expires lots whose scheduled expiry was missed, in bounded batches", async () => {
    const t = await setup();
    const { userId } = await signUp(t, "u1");
    await t.run(async (ctx) => {
      for (let i = 0; i < 250; i++) {
        await ctx.db.insert("creditLots", {
          userId,
          source: "adjustment",
          sourceKey: `missed:${i}`,
          granted: 0,
          remaining: 0,
          held: 0,
          expiresAt: START - DAY,
          status: "active",
          closed: false,
          createdAt: START - 2 * DAY,
        });
      }
    });
    expect(await t.mutation(internal.credits.expireDueLots, {})).toEqual({
      expired: EXPIRE_BATCH_SIZE,
      more: true,
    });
    await finishDueScheduledFunctions(t);
    const lots = await lotsOf(t, userId);
    expect(lots.filter((l) => l.source === "adjustment" && l.status === "active")).toHaveLength(0);
  });
});

describe("grants", () => {
  test("a source key is granted once: a replay grants nothing", async () => {
    const t = await setup();
    const { userId } = await signUp(t, "u1");
    const granted = await t.run(async (ctx) => {
      const grantOnce = () =>
        grantLot(ctx, userId, {
          kind: "adjustment",
          source: "adjustment",
          credits: 7,
          sourceKey: "support:ticket-9",
        });
      return [await grantOnce(), await grantOnce()];
    });
    expect(granted[0]).not.toBeNull();
    expect(granted[1]).toBeNull();
    expect((await lotsOf(t, userId)).map((l) => l.granted)).toEqual([80, 7]);
    await checkInvariants(t);
  });

  test("expiresAt must be in the future and only for positive grants", async () => {
    const t = await setup();
    const { userId } = await signUp(t, "u1");
    await expectCode(
      t.mutation(internal.credits.grantCredits, {
        userId,
        credits: 5,
        note: "x",
        expiresAt: START - 1,
      }),
      "INVALID_ARGUMENT",
    );
    await expectCode(
      t.mutation(internal.credits.grantCredits, {
        userId,
        credits: -5,
        note: "x",
        expiresAt: START + DAY,
      }),
      "INVALID_ARGUMENT",
    );
  });
});

describe("listLots", () => {
  test("the caller's lots, live ones first, with source, amounts and expiry", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "u1");
    await grant(t, userId, 5, START + HOUR);
    await grant(t, userId, 9);
    await advance(t, 2 * HOUR);
    const page = await as.query(api.credits.listLots, {
      paginationOpts: { numItems: 10, cursor: null },
    });
    expect(page.page.map((l) => [l.source, l.status, l.granted, l.remaining, l.held])).toEqual([
      ["welcome", "active", 80, 80, 0],
      ["adjustment", "active", 9, 9, 0],
      ["adjustment", "expired", 5, 0, 0],
    ]);
    expect(page.page[0]).not.toHaveProperty("sourceKey");
  });
});

describe("the migration of rows from before lots", () => {
  const MIGRATE = { fn: "migrations:moveBalancesIntoLots" };
  const UNCONVERTED = /from before credit lots: run migrations:moveBalancesIntoLots/;

  /**
   * A user as the code before lots left one: the welcome lot (80), then on the user row only:
   * an operator's +10, a lot the old code adopted (5, no ledger row for it), two purchases (40,
   * then 25; no lot) and two holds without allocations (10 each): 80 + 10 + 5 + 65 − 20 = 140
   * available (55 outside lots), 20 held.
   */
  async function legacyUser(t: TestConvex) {
    const { as, userId } = await signUp(t, "u1");
    const ids = await t.run(async (ctx) => {
      let credits = 80;
      const row = async (delta: number, fields: Partial<Doc<"ledger">>) => {
        credits += delta;
        await ctx.db.insert("ledger", {
          userId,
          delta,
          balanceAfter: credits,
          kind: "adjustment",
          createdAt: Date.now(),
          ...fields,
        });
      };
      await row(10, { note: "old operator grant" });
      await row(5, { note: "old grant, adopted into a lot since" });
      await ctx.db.insert("creditLots", {
        userId,
        source: "adjustment",
        sourceKey: `legacy:${userId}`,
        granted: 5,
        remaining: 5,
        held: 0,
        status: "active",
        closed: false,
        createdAt: Date.now(),
      });
      const payments: Id<"payments">[] = [];
      for (const [i, credits] of [40, 25].entries()) {
        const paymentId = await ctx.db.insert("payments", {
          userId,
          trueLayerTxnId: `tl-old-${i}`,
          amount: 3100,
          creditsPurchased: credits,
          creditsAdded: credits,
          timestamp: START - (10 - i) * DAY,
          succeededAt: START - (10 - i) * DAY,
          status: "executed",
          planName: "creator",
          currency: "GBP",
        });
        payments.push(paymentId);
        await row(credits, { kind: "purchase", paymentId });
      }
      const jobs: Id<"jobs">[] = [];
      for (let i = 0; i < 2; i++) {
        const jobId = await ctx.db.insert("jobs", {
          userId,
          prompt: `old ${i}`,
          durationSec: 10,
          creditsUsed: 10,
          status: "queued",
          creditStatus: "held",
          createdAt: Date.now(),
        });
        jobs.push(jobId);
        await row(-10, { kind: "reserve", reservedDelta: 10, jobId });
      }
      await ctx.db.patch("users", userId, { credits, reservedCredits: 20 });
      return { payments, jobs };
    });
    return { as, userId, ...ids };
  }

  async function migrate(t: TestConvex, args: { cursor?: null; batchSize?: number } = {}) {
    await t.mutation(internal.migrations.moveBalancesIntoLots, { ...MIGRATE, ...args });
    await finishDueScheduledFunctions(t);
  }

  test("the money code refuses unconverted rows loudly and writes nothing", async () => {
    const t = await setup();
    const { as, jobs } = await legacyUser(t);
    await expect(checkInvariants(t)).rejects.toThrow();
    const before = await t.run(async (ctx) => ({
      ledger: (await ctx.db.query("ledger").collect()).length,
      lots: (await ctx.db.query("creditLots").collect()).length,
    }));
    await expect(as.mutation(api.jobs.createJob, { prompt: "x", durationSec: 5 })).rejects.toThrow(
      UNCONVERTED,
    );
    await expect(as.mutation(api.jobs.cancelJob, { jobId: jobs[0] })).rejects.toThrow(UNCONVERTED);
    await expect(
      t.mutation(internal.payments.applyTrueLayerEvent, {
        eventId: "evt-refund",
        type: "refund_executed",
        trueLayerPaymentId: "tl-old-0",
        refundId: "tl-refund-old",
        amountInMinor: 3100,
      }),
    ).rejects.toThrow(UNCONVERTED);
    const after = await t.run(async (ctx) => ({
      ledger: (await ctx.db.query("ledger").collect()).length,
      lots: (await ctx.db.query("creditLots").collect()).length,
    }));
    expect(after).toEqual(before);
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({
      credits: 140,
      reserved: 20,
    });
  });

  test("converts each shape without moving the balance, keeps the invariants, and runs once", async () => {
    const t = await setup();
    const { as, userId, payments, jobs } = await legacyUser(t);
    await signUp(t, "u2"); // a user from after lots: nothing to convert
    await migrate(t, { batchSize: 1 }); // one user per batch: each batch schedules the next
    expect(await t.query(internal.migrations.status, {})).toEqual([
      { name: "migrations:moveBalancesIntoLots", isDone: true, processed: 2 },
    ]);
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({
      credits: 140,
      reserved: 20,
    });
    const lots = await lotsOf(t, userId);
    const row = (lot: Doc<"creditLots">) => [
      lot.source,
      lot.granted,
      lot.remaining,
      lot.held,
      lot.paymentId ?? null,
      lot.expiresAt ?? null,
    ];
    // Newest payment first, each up to what it bought, from the 55 outside lots; the rest and
    // the holds in one lot. The adopted lot keeps its credits, with the ledger row it lacked.
    expect(lots.map(row)).toEqual([
      ["welcome", 80, 80, 0, null, null],
      ["adjustment", 5, 5, 0, null, null],
      ["purchase", 25, 25, 0, payments[1], null],
      ["purchase", 30, 30, 0, payments[0], null],
      ["adjustment", 20, 20, 20, null, null],
    ]);
    expect(lots[1].sourceKey).toBe(`adjustment:${lots[1]._id}`);
    for (const jobId of jobs) {
      expect((await jobDoc(t, jobId)).allocations).toEqual([{ lotId: lots[4]._id, credits: 10 }]);
    }
    await checkInvariants(t);

    const snapshot = async () =>
      await t.run(async (ctx) => ({
        ledger: await ctx.db.query("ledger").collect(),
        lots: await ctx.db.query("creditLots").collect(),
        jobs: await ctx.db.query("jobs").collect(),
      }));
    const converted = await snapshot();
    await migrate(t); // done: a no-op
    await migrate(t, { cursor: null }); // from the start again: every user is converted already
    expect(await snapshot()).toEqual(converted);

    // The converted rows work the one way: holds settle and release on their lot, new holds
    // spend the lots.
    await as.mutation(api.jobs.cancelJob, { jobId: jobs[0] });
    await t.mutation(internal.jobs.updateJobStatus, { jobId: jobs[1], status: "running" });
    await t.mutation(internal.jobs.updateJobStatus, { jobId: jobs[1], status: "done", r2Url: R2 });
    await as.mutation(api.jobs.createJob, { prompt: "new", durationSec: 15 });
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({
      credits: 135,
      reserved: 15,
    });
    await checkInvariants(t);
  });

  test("a refund after the migration reaches its payment's carved lot; the rest is outstanding", async () => {
    const t = await setup();
    const { as, payments } = await legacyUser(t);
    await migrate(t);
    const outcome = await t.mutation(internal.payments.applyTrueLayerEvent, {
      eventId: "evt-refund",
      type: "refund_executed",
      trueLayerPaymentId: "tl-old-0",
      refundId: "tl-refund-old",
      amountInMinor: 3100,
    });
    expect(outcome.outcome).toBe("applied");
    const refund = await t.run(
      async (ctx) =>
        await ctx.db
          .query("refunds")
          .withIndex("by_paymentId", (q) => q.eq("paymentId", payments[0]))
          .unique(),
    );
    expect(refund).toMatchObject({ creditsDue: 40, creditsReclaimed: 30, outstandingCredits: 10 });
    expect((await as.query(api.credits.getCredits, {})).credits).toBe(110);
    await checkInvariants(t);
  });
});
