import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import { withTriggers } from "../convex/lib/triggers";
import type { PlanName } from "../convex/lib/validators";
import {
  FOLD_BATCH,
  PENDING_READ_LIMIT,
  readSubscriptionGauges,
} from "../convex/model/subscriptionTotals";
import { checkSubscriptionGauges } from "./support/invariants";
import { setup, signUp, type TestConvex } from "./support/setup";

/**
 * The subscription gauges as deferred counters (model/subscriptionTotals.ts): a change inserts a
 * delta, the fold adds deltas to the one totals row, the overview adds what is not folded yet.
 */

const NOW = Date.UTC(2026, 0, 5, 10);

beforeEach(() => {
  vi.useFakeTimers({ now: NOW });
});
afterEach(() => {
  vi.useRealTimers();
});

async function snapshot(t: TestConvex) {
  return await t.run(async (ctx) => ({
    subscriptions: await ctx.db.query("subscriptions").collect(),
    plans: await ctx.db.query("plans").collect(),
    totals: await ctx.db.query("subscriptionTotals").collect(),
    deltas: await ctx.db.query("subscriptionTotalDeltas").collect(),
  }));
}

async function foldAll(t: TestConvex) {
  const runs: Array<{ folded: number; more: boolean }> = [];
  do {
    runs.push(await t.mutation(internal.metrics.foldSubscriptionTotals, {}));
  } while (runs.at(-1)!.more);
  return runs;
}

type Op =
  | { kind: "insert"; plan: PlanName; currency: string; active: boolean }
  | { kind: "status"; pick: number; status: "active" | "past_due" | "canceled" }
  | { kind: "plan"; pick: number; plan: PlanName }
  | { kind: "delete"; pick: number }
  | { kind: "fold" };

const plan = fc.constantFrom<PlanName>("starter", "creator", "studio");
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant("insert" as const),
    plan,
    currency: fc.constantFrom("GBP", "EUR"),
    active: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant("status" as const),
    pick: fc.nat(),
    status: fc.constantFrom("active" as const, "past_due" as const, "canceled" as const),
  }),
  fc.record({ kind: fc.constant("plan" as const), pick: fc.nat(), plan }),
  fc.record({ kind: fc.constant("delete" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("fold" as const) }),
);

describe("subscription gauges", () => {
  test("totals + pending deltas equal the live subscriptions after any sequence of changes and folds", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), async (ops) => {
        const t = await setup();
        const { userId } = await signUp(t, "owner");
        const ids: Array<Id<"subscriptions">> = [];
        for (const step of ops) {
          if (step.kind === "fold") {
            await foldAll(t);
          } else {
            // Through the writer every mutation uses (its triggers), as a subscription change is made.
            await t.run(async (ctx) => {
              const db = withTriggers(ctx).db;
              const id = ids.length > 0 && "pick" in step ? ids[step.pick % ids.length] : null;
              if (step.kind === "insert") {
                ids.push(
                  await db.insert("subscriptions", {
                    userId,
                    plan: step.plan,
                    currency: step.currency,
                    status: step.active ? "active" : "incomplete",
                    periodIndex: 0,
                    cancelAtPeriodEnd: false,
                    createdAt: Date.now(),
                  }),
                );
              } else if (id === null) {
                return;
              } else if (step.kind === "delete") {
                await db.delete("subscriptions", id);
                ids.splice(ids.indexOf(id), 1);
              } else {
                await db.patch(
                  "subscriptions",
                  id,
                  step.kind === "plan" ? { plan: step.plan } : { status: step.status },
                );
              }
            });
          }
          const db = await snapshot(t);
          checkSubscriptionGauges(db);
          expect(db.totals.length).toBeLessThanOrEqual(1);
          // The overview's reading is exact while few changes wait, and counts them.
          const gauges = await t.run(async (ctx) => await readSubscriptionGauges(ctx));
          expect(gauges).toMatchObject({ pending: db.deltas.length, exact: true });
        }
        await foldAll(t);
        const folded = await snapshot(t);
        expect(folded.deltas).toHaveLength(0);
        checkSubscriptionGauges(folded);
      }),
      { numRuns: 25 },
    );
  });

  test("a subscription change inserts a delta and writes no totals row", async () => {
    const t = await setup();
    const { userId } = await signUp(t, "owner");
    const id = await t.run(async (ctx) => {
      const db = withTriggers(ctx).db;
      const id = await db.insert("subscriptions", {
        userId,
        plan: "creator",
        status: "active",
        periodIndex: 0,
        cancelAtPeriodEnd: false,
        createdAt: Date.now(),
      });
      await db.patch("subscriptions", id, { plan: "studio" });
      // Not a change the gauges see: no delta.
      await db.patch("subscriptions", id, { cancelAtPeriodEnd: true });
      return id;
    });
    let db = await snapshot(t);
    expect(db.totals).toHaveLength(0);
    expect(db.deltas.map(({ active, mrr }) => ({ active, mrr }))).toEqual([
      { active: { starter: 0, creator: 1, studio: 0 }, mrr: { GBP: 3100 } },
      { active: { starter: 0, creator: -1, studio: 1 }, mrr: { GBP: 6000 - 3100 } },
    ]);
    expect(await foldAll(t)).toEqual([{ folded: 2, more: false }]);
    db = await snapshot(t);
    expect(db.deltas).toHaveLength(0);
    expect(db.totals.map(({ active, mrr }) => ({ active, mrr }))).toEqual([
      { active: { starter: 0, creator: 0, studio: 1 }, mrr: { GBP: 6000 } },
    ]);
    // A fold with nothing to do writes nothing.
    const before = db.totals[0];
    expect(await foldAll(t)).toEqual([{ folded: 0, more: false }]);
    expect((await snapshot(t)).totals).toEqual([before]);
    await t.run(async (ctx) => {
      await withTriggers(ctx).db.patch("subscriptions", id, { status: "canceled" });
    });
    expect((await snapshot(t)).totals).toEqual([before]);
    checkSubscriptionGauges(await snapshot(t));
  });

  test("the fold drains a backlog FOLD_BATCH at a time and merges the sharded rows of before", async () => {
    const t = await setup();
    const backlog = 2 * FOLD_BATCH + 7;
    await t.run(async (ctx) => {
      for (let shard = 0; shard < 16; shard++) {
        // As the sharded trigger left them: one shard may be negative, the sum is not.
        await ctx.db.insert("subscriptionTotals", {
          shard,
          active: { starter: shard === 3 ? -1 : 1, creator: 0, studio: 0 },
          mrr: { GBP: shard === 3 ? -1200 : 1200 },
        });
      }
      for (let i = 0; i < backlog; i++) {
        await ctx.db.insert("subscriptionTotalDeltas", {
          active: { starter: 0, creator: 1, studio: 0 },
          mrr: { EUR: 3100 },
        });
      }
    });
    expect(await foldAll(t)).toEqual([
      { folded: FOLD_BATCH, more: true },
      { folded: FOLD_BATCH, more: true },
      { folded: 7, more: false },
    ]);
    const db = await snapshot(t);
    expect(db.deltas).toHaveLength(0);
    expect(db.totals.map(({ shard, active, mrr }) => ({ shard, active, mrr }))).toEqual([
      {
        shard: undefined,
        active: { starter: 14, creator: backlog, studio: 0 },
        mrr: { GBP: 14 * 1200, EUR: backlog * 3100 },
      },
    ]);
  });

  test("metrics.overview adds the unfolded deltas, and says when more wait than it reads", async () => {
    const t = await setup();
    const admin = await signUp(t, "admin");
    await t.mutation(internal.users.setRole, { userId: admin.userId, role: "admin" });
    const endHour = Math.floor(NOW / 3_600_000) * 3_600_000;
    const addDeltas = (count: number) =>
      t.run(async (ctx) => {
        for (let i = 0; i < count; i++) {
          await ctx.db.insert("subscriptionTotalDeltas", {
            active: { starter: 1, creator: 0, studio: 0 },
            mrr: { GBP: 1200 },
          });
        }
      });
    await addDeltas(PENDING_READ_LIMIT);
    expect((await admin.as.query(api.metrics.overview, { endHour })).subscriptions).toMatchObject({
      active: { starter: PENDING_READ_LIMIT, total: PENDING_READ_LIMIT },
      mrr: [{ currency: "GBP", amountMinor: PENDING_READ_LIMIT * 1200 }],
      pending: PENDING_READ_LIMIT,
      exact: true,
    });
    await addDeltas(8);
    // More than it reads: the oldest PENDING_READ_LIMIT are in, the answer says it lags.
    expect((await admin.as.query(api.metrics.overview, { endHour })).subscriptions).toMatchObject({
      active: { starter: PENDING_READ_LIMIT },
      pending: PENDING_READ_LIMIT + 1,
      exact: false,
    });
    await foldAll(t);
    expect((await admin.as.query(api.metrics.overview, { endHour })).subscriptions).toMatchObject({
      active: { starter: PENDING_READ_LIMIT + 8 },
      mrr: [{ currency: "GBP", amountMinor: (PENDING_READ_LIMIT + 8) * 1200 }],
      pending: 0,
      exact: true,
    });
  });
});
