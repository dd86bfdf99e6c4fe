import { afterEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import { addMonthsUtc } from "../convex/model/calendar";
import { checkInvariants } from "./support/invariants";
import { DAY, HOUR } from "./support/billing";
import { mandateWorld, type MandateWorld } from "./support/mandates";
import { foldBucketDeltas } from "./support/setup";

/**
 * Renewals charged on the user's mandate, and dunning (docs/subscriptions.md, "Renewals on a
 * mandate"). TrueLayer's payments on mandates are stubbed (support/mandates.ts); mandates are
 * inserted authorised. Plans: starter 1000, creator 3100, studio 6000 (minor units).
 */

afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllEnvs();
  vi.unstubAllGlobals();
});

/** A creator subscriber anchored at `start`, with an authorised mandate. */
async function mandateSubscriber(
  w: MandateWorld,
  limits?: { maxAmount?: number },
  clerkId = "sub_m",
) {
  const { as, userId } = await w.user(clerkId);
  await w.pay(await w.checkout(as, "creator"));
  const mandateId = await w.authorizeMandate(userId, limits);
  return { as, userId, mandateId };
}

/** Every charge TrueLayer created for the user gets its outcome: executed. */
async function executeCharges(w: MandateWorld, userId: Id<"users">) {
  for (const payment of await w.renewals(userId)) {
    if (payment.status === "pending" && payment.trueLayerTxnId !== "") {
      await w.pay(payment._id);
    }
  }
}

const ANCHORS = {
  "the 28th": "2026-01-28T09:00:00Z",
  "the 29th": "2026-01-29T09:00:00Z",
  "the 30th": "2026-01-30T09:00:00Z",
  "the 31st": "2026-01-31T09:00:00Z",
  "29 Feb": "2028-02-29T09:00:00Z",
};

describe("a year of renewals on a mandate", () => {
  test.each(Object.entries(ANCHORS))(
    "anchored on %s: 12 renewals charged without the user, one period each",
    async (_name, iso) => {
      const anchor = Date.parse(iso);
      const w = await mandateWorld(anchor);
      const { userId, mandateId } = await mandateSubscriber(w);
      for (let n = 0; n < 12; n++) {
        const end = addMonthsUtc(anchor, n + 1);
        await w.at(end - 3 * DAY);
        const { sub } = await w.state(userId);
        expect(sub!.renewal).toMatchObject({
          method: "mandate",
          status: "pending",
          payUrl: null,
          periodIndex: n + 1,
          dueAt: end,
        });
        await executeCharges(w, userId);
        await w.at(end);
        expect((await w.state(userId)).sub).toMatchObject({
          status: "active",
          periodIndex: n + 1,
          currentPeriodStart: end,
          currentPeriodEnd: addMonthsUtc(anchor, n + 2),
        });
      }
      const renewals = await w.renewals(userId);
      expect(renewals).toHaveLength(12);
      expect(renewals.every((p) => p.method === "mandate" && p.mandateId === mandateId)).toBe(true);
      expect(renewals.every((p) => p.status === "executed")).toBe(true);
      // One TrueLayer payment per period, each on the mandate with a key of its own.
      expect(w.charges).toHaveLength(12);
      expect(new Set(w.charges.map((c) => c.idempotencyKey)).size).toBe(12);
      const periodLots = (await w.state(userId)).lots.filter((l) => l.source === "period");
      expect(periodLots).toHaveLength(13);
      await checkInvariants(w.t);
    },
  );
});

const START = Date.parse("2026-01-31T10:00:00Z");
const END0 = Date.parse("2026-02-28T10:00:00Z");

describe("lead time", () => {
  test("Direct Debit: the renewal is charged 7 days before the period end, not 3", async () => {
    const w = await mandateWorld(START, "direct_debit");
    const { userId } = await mandateSubscriber(w);
    expect((await w.state(userId)).sub!.renewalDueAt).toBe(END0 - 7 * DAY);
    await w.at(END0 - 7 * DAY - HOUR);
    expect(w.charges).toHaveLength(0);
    await w.at(END0 - 7 * DAY);
    expect((await w.state(userId)).sub!.renewal).toMatchObject({
      method: "mandate",
      dueAt: END0,
    });
    expect(w.charges).toHaveLength(1);
    await executeCharges(w, userId);
    await w.at(END0);
    expect((await w.state(userId)).sub).toMatchObject({ status: "active", periodIndex: 1 });
  });
});

describe("the hosted page instead", () => {
  test("a year where the mandate is revoked in month 4: from then on the renewals are manual", async () => {
    const w = await mandateWorld(START);
    const { userId, mandateId } = await mandateSubscriber(w);
    for (let n = 0; n < 12; n++) {
      const end = addMonthsUtc(START, n + 1);
      if (n === 3) await w.revokeMandate(mandateId);
      await w.at(end - 3 * DAY);
      const renewal = (await w.state(userId)).sub!.renewal!;
      if (n < 3) {
        expect(renewal).toMatchObject({ method: "mandate", payUrl: null });
        await executeCharges(w, userId);
      } else {
        expect(renewal).toMatchObject({ method: "manual", status: "pending" });
        expect(renewal.fallbackReason).toBeUndefined(); // no authorised mandate: today's renewal
        expect(renewal.payUrl).toContain("payment_id=tl-");
        await w.pay(renewal.paymentId); // the user pays on TrueLayer's page
      }
      await w.at(end);
      expect((await w.state(userId)).sub).toMatchObject({ status: "active", periodIndex: n + 1 });
    }
    const renewals = await w.renewals(userId);
    expect(renewals.map((p) => p.method ?? "manual")).toEqual([
      ...Array<string>(3).fill("mandate"),
      ...Array<string>(9).fill("manual"),
    ]);
    expect(w.charges).toHaveLength(3);
    await checkInvariants(w.t);
  });

  test("an amount over the mandate's maximum per payment: made on the hosted page, with the reason", async () => {
    const w = await mandateWorld(START);
    const { userId } = await mandateSubscriber(w, { maxAmount: 3000 }); // creator costs 3100
    await w.at(END0 - 3 * DAY);
    const renewal = (await w.state(userId)).sub!.renewal!;
    expect(renewal).toMatchObject({ method: "manual", status: "pending" });
    expect(renewal.fallbackReason).toMatch(/over the mandate's maximum/);
    expect(renewal.payUrl).toContain("payment_id=");
    expect(w.charges).toHaveLength(0);
    expect(await w.payment(renewal.paymentId)).not.toHaveProperty("mandateId");
  });

  test("over the monthly limit with another charge this month: the hosted page", async () => {
    const w = await mandateWorld(START);
    const { userId, mandateId } = await mandateSubscriber(w);
    await w.at(END0 - 4 * DAY);
    await w.t.run(async (ctx) => {
      await ctx.db.patch("mandates", mandateId, { periodicLimit: 4000 });
      // Another charge on the mandate this month (1000): 1000 + 3100 is over 4000.
      const renewal = (await ctx.db.query("payments").first())!;
      const { _id, _creationTime, ...fields } = renewal;
      await ctx.db.insert("payments", {
        ...fields,
        amount: 1000,
        method: "mandate",
        mandateId,
        trueLayerTxnId: "tl-elsewhere",
        timestamp: Date.now(),
      });
    });
    await w.at(END0 - 3 * DAY);
    const renewal = (await w.state(userId)).sub!.renewal!;
    expect(renewal).toMatchObject({ method: "manual", amount: 3100 });
    expect(renewal.fallbackReason).toMatch(/monthly limit of 4000/);
    expect(w.charges).toHaveLength(0);
  });

  test("TrueLayer could not create the charge 3 times: the hosted page", async () => {
    const w = await mandateWorld(START);
    const { userId } = await mandateSubscriber(w);
    w.mandateDown = true;
    const MIN = 60 * 1000;
    for (const at of [0, 10, 30]) await w.at(END0 - 3 * DAY + at * MIN);
    expect((await w.state(userId)).sub!.renewal).toMatchObject({
      method: "mandate",
      status: "failed",
      attempts: 3,
      retryAt: END0 - 3 * DAY + 70 * MIN,
    });
    await w.at(END0 - 3 * DAY + 70 * MIN);
    const renewal = (await w.state(userId)).sub!.renewal!;
    expect(renewal).toMatchObject({ method: "manual", status: "pending" });
    expect(renewal.fallbackReason).toMatch(/refused to create it 3 times/);
    expect(renewal.payUrl).toContain("payment_id=");
    expect(w.charges).toHaveLength(0);
  });

  test("without TRUELAYER_MANDATE_TYPE an authorised mandate is not used", async () => {
    const w = await mandateWorld(START);
    vi.stubEnv("TRUELAYER_MANDATE_TYPE", "");
    const { userId } = await mandateSubscriber(w);
    await w.at(END0 - 3 * DAY);
    const renewal = (await w.state(userId)).sub!.renewal!;
    expect(renewal).toMatchObject({ method: "manual", status: "pending" });
    expect(renewal.fallbackReason).toBeUndefined();
    expect(w.charges).toHaveLength(0);
  });
});

describe("changes before the charge", () => {
  test("a downgrade before the renewal falls due: the mandate is charged the cheaper plan", async () => {
    const w = await mandateWorld(START);
    const { as, userId } = await mandateSubscriber(w);
    await w.at(END0 - 4 * DAY);
    await as.mutation(api.subscriptions.changePlan, { planName: "starter" });
    await w.at(END0 - 3 * DAY);
    expect(w.charges).toMatchObject([{ amount: 1000 }]);
    await executeCharges(w, userId);
    await w.at(END0);
    expect((await w.state(userId)).sub).toMatchObject({ status: "active", plan: "starter" });
  });

  test("a cancel while the charge waits for TrueLayer drops it: nothing is charged", async () => {
    const w = await mandateWorld(START);
    const { as, userId } = await mandateSubscriber(w);
    vi.setSystemTime(END0 - 3 * DAY);
    await w.t.mutation(internal.subscriptions.sweepDue, {}); // recorded, not created yet
    await as.mutation(api.subscriptions.cancel, {});
    await w.at(END0 - 3 * DAY + HOUR);
    expect(w.charges).toHaveLength(0);
    const [renewal] = await w.renewals(userId);
    expect(renewal).toMatchObject({ status: "failed", failureKind: "superseded" });
    await w.at(END0);
    expect((await w.state(userId)).sub).toMatchObject({
      status: "canceled",
      cancelReason: "requested",
    });
  });

  test("a downgrade after TrueLayer created the charge keeps it: the paid period first, then the downgrade", async () => {
    const w = await mandateWorld(START);
    const { as, userId } = await mandateSubscriber(w);
    await w.at(END0 - 3 * DAY);
    await as.mutation(api.subscriptions.changePlan, { planName: "starter" });
    const [charge] = await w.renewals(userId);
    expect(charge.status).toBe("pending"); // not dropped: TrueLayer may be executing it
    await executeCharges(w, userId);
    await w.at(END0);
    expect((await w.state(userId)).sub).toMatchObject({
      plan: "creator",
      periodIndex: 1,
      pendingPlan: "starter",
    });
  });
});

describe("dunning", () => {
  /** The renewal's charge at END0 − 3 days, refused by the payer's bank. */
  async function refusedRenewal(w: MandateWorld, userId: Id<"users">) {
    await w.at(END0 - 3 * DAY);
    const first = (await w.state(userId)).sub!.renewal!;
    await w.refuse(first.paymentId);
    expect((await w.state(userId)).sub!.renewal).toMatchObject({ status: "failed", refusals: 1 });
    return first.paymentId;
  }

  /** The charge made at `time` (a new TrueLayer payment), its payment id. */
  async function chargeAt(w: MandateWorld, userId: Id<"users">, time: number) {
    await w.at(time);
    const renewal = (await w.state(userId)).sub!.renewal!;
    expect(renewal).toMatchObject({ status: "pending", method: "mandate", periodIndex: 1 });
    return renewal.paymentId;
  }

  test("refused, retried 1 and 3 days after the period end: the second retry pays the grace's period", async () => {
    const w = await mandateWorld(START);
    const { userId } = await mandateSubscriber(w);
    await refusedRenewal(w, userId);
    await w.at(END0);
    const pastDue = (await w.state(userId)).sub!;
    expect(pastDue).toMatchObject({ status: "past_due", graceEndsAt: END0 + 7 * DAY });
    expect(pastDue.renewalDueAt).toBe(END0 + DAY);
    // Nothing before its time: the sweep half a day in charges nothing.
    await w.at(END0 + 12 * HOUR);
    expect(w.charges).toHaveLength(1);
    const retry1 = await chargeAt(w, userId, END0 + DAY);
    await w.refuse(retry1);
    expect((await w.state(userId)).sub!.renewalDueAt).toBe(END0 + 3 * DAY);
    const retry2 = await chargeAt(w, userId, END0 + 3 * DAY);
    await w.pay(retry2);
    const { sub, lots } = await w.state(userId);
    expect(sub).toMatchObject({ status: "active", periodIndex: 1, currentPeriodStart: END0 });
    expect(sub!.renewal).toBeUndefined();
    expect(lots.filter((l) => l.source === "period" && l.paymentId === retry2)).toHaveLength(1);
    // Three charges, each its own TrueLayer payment with a key of its own.
    expect(w.charges.map((c) => c.idempotencyKey.split(":").slice(3))).toEqual([
      ["1", "0"],
      ["1", "1"],
      ["1", "2"],
    ]);
    // Nothing more is charged in the grace.
    await w.at(END0 + 5 * DAY);
    expect(w.charges).toHaveLength(3);
    await checkInvariants(w.t);
  });

  test("every retry refused: canceled at the grace end as unpaid (involuntary churn)", async () => {
    const w = await mandateWorld(START);
    const { userId } = await mandateSubscriber(w);
    await refusedRenewal(w, userId);
    for (const days of [1, 3, 5]) {
      await w.refuse(await chargeAt(w, userId, END0 + days * DAY));
    }
    expect((await w.state(userId)).sub!.renewal).toMatchObject({ status: "failed", refusals: 4 });
    expect((await w.state(userId)).sub!.renewalDueAt).toBeUndefined();
    await w.at(END0 + 7 * DAY);
    const { sub, user } = await w.state(userId);
    expect(sub).toMatchObject({ status: "canceled", cancelReason: "unpaid" });
    expect(user.plan).toBe("starter");
    expect(w.charges).toHaveLength(4);
    await checkInvariants(w.t);
  });

  test("a late success of the refused first charge after a retry paid: credited once, as a one-month lot", async () => {
    const w = await mandateWorld(START);
    const { userId } = await mandateSubscriber(w);
    const first = await refusedRenewal(w, userId);
    await w.at(END0);
    await w.pay(await chargeAt(w, userId, END0 + DAY));
    expect((await w.state(userId)).sub).toMatchObject({ status: "active", periodIndex: 1 });
    await w.pay(first); // TrueLayer executes it after all
    await w.pay(first); // and says so twice
    const { sub, lots } = await w.state(userId);
    expect(sub).toMatchObject({ status: "active", periodIndex: 1 });
    expect(lots.filter((l) => l.source === "period")).toHaveLength(2); // periods 0 and 1 only
    expect(lots.filter((l) => l.paymentId === first)).toMatchObject([
      { source: "purchase", granted: 250 },
    ]);
    await checkInvariants(w.t);
  });

  test("the user pays on the page while past_due: no further retry is charged", async () => {
    const w = await mandateWorld(START);
    const { as, userId } = await mandateSubscriber(w);
    await refusedRenewal(w, userId);
    await w.at(END0 + 2 * HOUR);
    const checkout = await w.checkout(as, "creator");
    expect((await w.payment(checkout)).purpose).toBe("renewal");
    await w.pay(checkout);
    expect((await w.state(userId)).sub).toMatchObject({ status: "active", periodIndex: 1 });
    await w.at(END0 + 6 * DAY);
    expect(w.charges).toHaveLength(1);
  });

  test("a cancel while past_due stops the retries", async () => {
    const w = await mandateWorld(START);
    const { as, userId } = await mandateSubscriber(w);
    await refusedRenewal(w, userId);
    await w.at(END0 + 2 * HOUR);
    await as.mutation(api.subscriptions.cancel, {});
    await w.at(END0 + 6 * DAY);
    expect(w.charges).toHaveLength(1);
    await w.at(END0 + 7 * DAY);
    expect((await w.state(userId)).sub).toMatchObject({
      status: "canceled",
      cancelReason: "requested",
    });
  });
});

describe("idempotency", () => {
  test("a call retried after TrueLayer answered 503 sends the same key: one charge", async () => {
    const w = await mandateWorld(START);
    const { userId } = await mandateSubscriber(w);
    w.failNext = 2; // the first try of createRenewal (which retries a 503 once) fails
    await w.at(END0 - 3 * DAY);
    const [renewal] = await w.renewals(userId);
    expect(w.failedKeys).toHaveLength(2);
    expect(w.calls).toHaveLength(1);
    expect(new Set([...w.failedKeys, w.calls[0].idempotencyKey]).size).toBe(1);
    expect(w.charges).toMatchObject([{ cineweavePaymentId: renewal._id, amount: 3100 }]);
    expect(renewal.trueLayerTxnId).toBe(w.charges[0].trueLayerPaymentId);
  });

  test("a renewal recorded again after TrueLayer could not create it keeps its charge's key", async () => {
    const w = await mandateWorld(START);
    const { userId } = await mandateSubscriber(w);
    w.mandateDown = true;
    await w.at(END0 - 3 * DAY);
    w.mandateDown = false;
    expect((await w.state(userId)).sub!.renewal).toMatchObject({ status: "failed", attempts: 1 });
    await w.at(END0 - 3 * DAY + 10 * 60 * 1000);
    const renewals = await w.renewals(userId);
    expect(renewals.map((p) => p.status)).toEqual(["failed", "pending"]);
    expect(new Set(w.failedKeys)).toEqual(new Set([w.charges[0].idempotencyKey]));
    expect(w.charges).toHaveLength(1);
  });
});

describe("metrics", () => {
  test("renewals by method, dunning recoveries, voluntary and involuntary churn", async () => {
    const w = await mandateWorld(START);
    const recovered = await mandateSubscriber(w, {}, "recovers");
    const lapsed = await mandateSubscriber(w, {}, "lapses");
    const leaving = await mandateSubscriber(w, {}, "leaves");
    const manual = await w.user("manual");
    await w.pay(await w.checkout(manual.as, "starter"));
    await w.t.mutation(internal.users.setRole, { userId: manual.userId, role: "admin" });
    await leaving.as.mutation(api.subscriptions.cancel, {});
    await w.at(END0 - 3 * DAY);
    for (const { userId } of [recovered, lapsed]) {
      await w.refuse((await w.state(userId)).sub!.renewal!.paymentId);
    }
    await w.pay((await w.state(manual.userId)).sub!.renewal!.paymentId);
    for (const days of [1, 3, 5]) {
      await w.at(END0 + days * DAY);
      for (const { userId } of [recovered, lapsed]) {
        const renewal = (await w.state(userId)).sub!.renewal;
        if (renewal?.status !== "pending") continue;
        if (userId === recovered.userId && days === 3) await w.pay(renewal.paymentId);
        else await w.refuse(renewal.paymentId);
      }
    }
    await w.at(END0 + 7 * DAY);
    // A week on, the every-minute fold has added the counted changes to the buckets.
    await foldBucketDeltas(w.t);
    const overview = await manual.as.query(api.metrics.overview, {
      hours: 720,
      endHour: Math.floor((END0 + 7 * DAY) / HOUR) * HOUR,
    });
    expect(overview.renewals).toEqual({
      // recovered: refused, refused, paid; lapsed: refused 4 times.
      paid: { mandate: 1, manual: 1 },
      failed: { mandate: 6, manual: 0 },
      dunningRecoveries: 1,
      churn: { voluntary: 1, involuntary: 1 },
    });
    expect(overview.subscriptions).toMatchObject({
      renewalsPaid: 2,
      renewalsFailed: 6,
      canceled: 2,
    });
  });
});
