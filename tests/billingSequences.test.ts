import { afterEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import { readSubscriptionGauges } from "../convex/model/subscriptionTotals";
import { checkInvariants } from "./support/invariants";
import { expectCode } from "./support/setup";
import { DAY, HOUR, billingWorld, creditsFromPayment, type BillingWorld } from "./support/billing";

/**
 * Money sequences nobody designed for (issue: billing core as one state machine). Each test is
 * a replayed defect: it failed before the payment's quote, the subscription lifecycle and the
 * refund lineage existed. Plans: starter 80 credits for 1000, creator 250 for 3100, studio 500
 * for 6000; a user signs up with an 80-credit welcome lot.
 */

const START = Date.parse("2026-01-31T10:00:00Z");
const END0 = Date.parse("2026-02-28T10:00:00Z");

afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllEnvs();
  vi.unstubAllGlobals();
});

/** A user with an active subscription on `plan`, anchored at START. */
async function subscriber(w: BillingWorld, plan = "creator", clerkId = "sub_1") {
  const { as, userId } = await w.user(clerkId);
  const paymentId = await w.checkout(as, plan);
  await w.pay(paymentId);
  return { as, userId, paymentId };
}

/** The renewal created 3 days before END0, paid. */
async function paidRenewal(w: BillingWorld, userId: Id<"users">) {
  await w.at(END0 - 3 * DAY);
  const renewal = (await w.state(userId)).sub!.renewal!;
  expect(renewal.status).toBe("pending");
  await w.pay(renewal.paymentId);
  expect((await w.state(userId)).sub!.renewal!.status).toBe("paid");
  return renewal.paymentId;
}

describe("an upgrade applies exactly what it was quoted", () => {
  test("credits priced in but spent before the payment: the new plan lot is smaller by their value", async () => {
    const w = await billingWorld(START);
    const { as, userId } = await subscriber(w);
    const upgrade = await w.checkout(as, "studio");
    expect((await w.payment(upgrade)).amount).toBe(2900); // 6000 − 250 unused creator credits (3100)
    await w.spend(as, 100);
    await w.pay(upgrade);
    const { user, sub, lots } = await w.state(userId);
    expect(sub).toMatchObject({ status: "active", plan: "studio" });
    // 150 converted as quoted; the 100 spent were worth 1240, i.e. 104 studio credits (rounded up).
    const studioLot = lots.find((l) => l.paymentId === upgrade)!;
    expect(studioLot.granted).toBe(396);
    expect(user.credits).toBe(80 + 396);
    expect((await w.payment(upgrade)).creditsAdded).toBe(396);
    await checkInvariants(w.t);
  });

  test("two upgrade checkouts, the dearer paid first: the other credits a one-month lot of what it paid", async () => {
    const w = await billingWorld(START);
    const { as, userId } = await subscriber(w, "starter");
    const toCreator = await w.checkout(as, "creator"); // 3100 − 1000
    const toStudio = await w.checkout(as, "studio"); // 6000 − 1000
    await w.pay(toStudio);
    await w.pay(toCreator);
    const { user, sub, lots } = await w.state(userId);
    expect(sub).toMatchObject({ status: "active", plan: "studio" });
    expect(lots.find((l) => l.paymentId === toStudio)).toMatchObject({ granted: 500 });
    // 2100 at creator's price per credit (3100 / 250): 169 credits, never a downgrade.
    expect(lots.find((l) => l.paymentId === toCreator)).toMatchObject({
      source: "purchase",
      granted: 169,
      expiresAt: END0, // a calendar month after it was paid
    });
    expect(user.credits).toBe(80 + 500 + 169);
    expect(user.plan).toBe("studio");
    await checkInvariants(w.t);
  });

  test("an upgrade paid after the next period began converts nothing of the fresh period", async () => {
    const w = await billingWorld(START);
    const { as, userId } = await subscriber(w);
    await w.at(END0 - 4 * DAY);
    const upgrade = await w.checkout(as, "studio"); // priced on period 0's 250 unused
    await paidRenewal(w, userId);
    await w.at(END0 + HOUR);
    await w.pay(upgrade);
    const { sub, lots, user } = await w.state(userId);
    expect(sub).toMatchObject({ plan: "creator", periodIndex: 1 });
    expect(lots.filter((l) => l.source === "period" && l.status === "active")).toMatchObject([
      { granted: 250, remaining: 250 },
    ]);
    expect(lots.find((l) => l.paymentId === upgrade)).toMatchObject({
      source: "purchase",
      granted: 241, // 2900 at 6000 / 500
    });
    expect(user.credits).toBe(80 + 250 + 250 + 241); // welcome, rollover, period 1, the upgrade's lot
    await checkInvariants(w.t);
  });

  test("an operator's comp while an upgrade checkout is pending: the payment credits what it bought", async () => {
    const w = await billingWorld(START);
    const { as, userId } = await subscriber(w);
    const upgrade = await w.checkout(as, "studio");
    await w.t.mutation(internal.users.updateUserPlan, { userId, planName: "studio" });
    await w.pay(upgrade);
    const { sub, lots, user } = await w.state(userId);
    expect(sub).toMatchObject({ plan: "studio", status: "active" });
    expect(lots.filter((l) => l.source === "period" && l.status === "active")).toMatchObject([
      { granted: 500 },
    ]);
    expect(lots.find((l) => l.paymentId === upgrade)).toMatchObject({
      source: "purchase",
      granted: 241,
    });
    expect(user.credits).toBe(80 + 500 + 241);
    await checkInvariants(w.t);
  });
});

describe("a refund takes back what its payment gave, wherever it went", () => {
  test("a partial refund of a prepaid renewal, returned by the bank: the period grants 250, not 350", async () => {
    const w = await billingWorld(START);
    const { userId } = await subscriber(w);
    const renewal = await paidRenewal(w, userId);
    const refundId = await w.refund(renewal, 1240);
    await w.refundEvent(renewal, refundId, "refund_executed");
    await w.refundEvent(renewal, refundId, "refund_failed");
    await w.at(END0);
    const { lots, user } = await w.state(userId);
    expect(creditsFromPayment(lots, renewal)).toBe(250);
    expect(user.credits).toBe(80 + 250 + 250); // welcome, rollover of period 0, period 1
    await checkInvariants(w.t);
  });

  test("a full refund of a prepaid renewal, returned by the bank: the renewal is paid again and the period begins", async () => {
    const w = await billingWorld(START);
    const { userId } = await subscriber(w);
    const renewal = await paidRenewal(w, userId);
    const refundId = await w.refund(renewal);
    await w.refundEvent(renewal, refundId, "refund_executed");
    expect((await w.state(userId)).sub!.renewal!.status).toBe("failed");
    await w.refundEvent(renewal, refundId, "refund_failed");
    expect((await w.state(userId)).sub!.renewal!.status).toBe("paid");
    await w.at(END0);
    const { sub, lots } = await w.state(userId);
    expect(sub).toMatchObject({ status: "active", periodIndex: 1 });
    expect(creditsFromPayment(lots, renewal)).toBe(250);
    expect(lots.filter((l) => l.source === "adjustment")).toEqual([]);
    await checkInvariants(w.t);
  });

  test("a refund after a bank-returned refund reaches the credits the reversal gave back", async () => {
    const w = await billingWorld(START);
    const { userId, paymentId } = await subscriber(w);
    const first = await w.refund(paymentId);
    await w.refundEvent(paymentId, first, "refund_executed");
    expect((await w.state(userId)).user.credits).toBe(80);
    await w.refundEvent(paymentId, first, "refund_failed");
    expect((await w.state(userId)).user.credits).toBe(330);
    const second = await w.refund(paymentId);
    await w.refundEvent(paymentId, second, "refund_executed");
    expect((await w.state(userId)).user.credits).toBe(80);
    await checkInvariants(w.t);
  });

  test.each(["refund first", "close first"])(
    "a refund at the period end takes back the credits that rolled over (%s)",
    async (order) => {
      const w = await billingWorld(START);
      const { userId, paymentId } = await subscriber(w);
      await paidRenewal(w, userId);
      vi.setSystemTime(END0 + HOUR);
      if (order === "close first") await w.at(END0 + HOUR);
      const refundId = await w.refund(paymentId);
      await w.refundEvent(paymentId, refundId, "refund_executed");
      await w.at(END0 + HOUR);
      const { user, lots } = await w.state(userId);
      expect(creditsFromPayment(lots, paymentId)).toBe(0);
      expect(user.credits).toBe(80 + 250); // welcome and period 1: period 0's rollover is gone
      await checkInvariants(w.t);
    },
  );

  test("held credits released after their lot expired come back traced to their payment: a refund takes them", async () => {
    const w = await billingWorld(START);
    const { as, userId, paymentId } = await subscriber(w);
    await as.mutation(api.subscriptions.cancel, {});
    const jobId = await as.mutation(api.jobs.createJob, { prompt: "held", durationSec: 15 });
    await w.at(END0); // the period lot expires with 15 credits held
    await as.mutation(api.jobs.cancelJob, { jobId }); // released into a returned lot
    expect((await w.state(userId)).user.credits).toBe(80 + 15);
    const refundId = await w.refund(paymentId);
    await w.refundEvent(paymentId, refundId, "refund_executed");
    const { user } = await w.state(userId);
    expect(user.credits).toBe(80);
    const refund = await w.t.run(async (ctx) => await ctx.db.query("refunds").first());
    expect(refund).toMatchObject({ creditsReclaimed: 15, outstandingCredits: 235 });
    await checkInvariants(w.t);
  });
});

describe("the subscription lifecycle", () => {
  test("changePlan to the current plan with nothing scheduled keeps the pending renewal", async () => {
    const w = await billingWorld(START);
    const { as, userId } = await subscriber(w);
    await w.at(END0 - 3 * DAY);
    const shown = (await w.state(userId)).sub!.renewal!;
    expect(await as.mutation(api.subscriptions.changePlan, { planName: "creator" })).toEqual({
      pendingPlan: null,
      takesEffectAt: END0,
    });
    expect((await w.state(userId)).sub!.renewal).toEqual(shown);
    await w.pay(shown.paymentId);
    await w.at(END0);
    const { sub, lots } = await w.state(userId);
    expect(sub).toMatchObject({ status: "active", periodIndex: 1 });
    expect(lots.find((l) => l.paymentId === shown.paymentId)).toMatchObject({ source: "period" });
    await checkInvariants(w.t);
  });

  test("a canceled subscriber is back on the sign-up plan; a comp of their old plan starts one", async () => {
    const w = await billingWorld(START);
    const { as, userId } = await subscriber(w);
    await as.mutation(api.subscriptions.cancel, {});
    await w.at(END0);
    expect((await w.state(userId)).sub!.status).toBe("canceled");
    expect((await w.state(userId)).user.plan).toBe("starter");
    expect(
      await w.t.mutation(internal.users.updateUserPlan, { userId, planName: "creator" }),
    ).toEqual({ changed: true, plan: "creator" });
    const { sub, user } = await w.state(userId);
    expect(sub).toMatchObject({ status: "active", plan: "creator" });
    expect(user).toMatchObject({ plan: "creator", credits: 80 + 250 });
    await checkInvariants(w.t);
  });

  test("a comp of the same plan brings a past_due subscription back to active", async () => {
    const w = await billingWorld(START);
    const { userId } = await subscriber(w);
    await w.at(END0 - 3 * DAY);
    await w.at(END0);
    expect((await w.state(userId)).sub!.status).toBe("past_due");
    expect(
      await w.t.mutation(internal.users.updateUserPlan, { userId, planName: "creator" }),
    ).toEqual({ changed: true, plan: "creator" });
    const { sub } = await w.state(userId);
    expect(sub).toMatchObject({ status: "active", plan: "creator", anchor: END0 });
    await checkInvariants(w.t);
  });

  test("a deleted user's subscription is canceled at once: no renewal, no MRR", async () => {
    const w = await billingWorld(START);
    const { userId } = await subscriber(w);
    await w.t.mutation(internal.clerk.applyClerkEvent, {
      eventId: "msg_del",
      type: "user.deleted",
      clerkId: "sub_1",
    });
    expect((await w.state(userId)).sub).toMatchObject({ status: "canceled" });
    await w.at(END0 - 3 * DAY);
    await w.at(END0 + 8 * DAY);
    const { sub, payments } = await w.state(userId);
    expect(sub!.renewal).toBeUndefined();
    expect(payments).toHaveLength(1);
    const gauges = await w.t.run(async (ctx) => await readSubscriptionGauges(ctx));
    expect(gauges).toMatchObject({ active: { creator: 0 }, mrr: { GBP: 0 }, exact: true });
    await checkInvariants(w.t);
  });

  test("a renewal TrueLayer refused (outage) is created again with backoff before the period ends", async () => {
    const w = await billingWorld(START);
    const { userId } = await subscriber(w);
    w.trueLayerDown = true;
    await w.at(END0 - 3 * DAY);
    const failed = (await w.state(userId)).sub!.renewal!;
    expect(failed.status).toBe("failed");
    w.trueLayerDown = false;
    await w.at(END0 - 2 * DAY);
    const renewal = (await w.state(userId)).sub!.renewal!;
    expect(renewal).toMatchObject({ status: "pending" });
    expect(renewal.paymentId).not.toBe(failed.paymentId);
    await w.pay(renewal.paymentId);
    await w.at(END0);
    expect((await w.state(userId)).sub).toMatchObject({ status: "active", periodIndex: 1 });
    await checkInvariants(w.t);
  });
});

describe("webhooks and operators", () => {
  test("refund_executed of a payment that is not ours: 200 ignored, TrueLayer not asked", async () => {
    const w = await billingWorld(START);
    const result = await w.deliver({
      type: "refund_executed",
      payment_id: "tl-someone-else",
      refund_id: "tl-refund-x",
    });
    expect(result.status).toBe(200);
    expect(result.body.outcome).toBe("unknown_payment");
    expect(w.requests.filter((r) => r.url.includes("/refunds/"))).toEqual([]);
  });

  test("refund_executed of ours that TrueLayer does not know (404): 200 ignored; 503 only while it errs", async () => {
    const w = await billingWorld(START);
    const { paymentId, userId } = await subscriber(w);
    const tlId = (await w.payment(paymentId)).trueLayerTxnId;
    w.refundLookup = () => new Response("busy", { status: 503 });
    const erring = await w.deliver({
      type: "refund_executed",
      payment_id: tlId,
      refund_id: "tl-refund-console",
    });
    expect(erring.status).toBe(503);
    w.refundLookup = () => new Response("{}", { status: 404 });
    const unknown = await w.deliver({
      type: "refund_executed",
      payment_id: tlId,
      refund_id: "tl-refund-console",
    });
    expect(unknown.status).toBe(200);
    expect(unknown.body.outcome).toBe("ignored");
    expect((await w.state(userId)).user.credits).toBe(330);
  });

  test("grantCredits refuses an expiry that is not a valid date", async () => {
    const w = await billingWorld(START);
    const { userId } = await w.user("u_1");
    await expectCode(
      w.t.mutation(internal.credits.grantCredits, {
        userId,
        credits: 5,
        note: "comp",
        expiresAt: 8.64e15 + 1,
      }),
      "INVALID_ARGUMENT",
    );
    expect((await w.state(userId)).lots).toHaveLength(1);
  });
});

describe("metrics", () => {
  test("subscription changes wait as deltas for the fold; the overview counts them at once", async () => {
    const w = await billingWorld(START);
    const { as, userId } = await subscriber(w);
    await w.t.mutation(internal.users.setRole, { userId, role: "admin" });
    const gauges = async () =>
      (await as.query(api.metrics.overview, { hours: 1, endHour: Math.floor(START / HOUR) * HOUR }))
        .subscriptions;
    const rows = () =>
      w.t.run(async (ctx) => ({
        totals: await ctx.db.query("subscriptionTotals").collect(),
        deltas: await ctx.db.query("subscriptionTotalDeltas").collect(),
      }));
    // The payment made the subscription active: a delta, no totals row written.
    expect(await rows()).toMatchObject({ totals: [], deltas: [{ active: { creator: 1 } }] });
    const counted = {
      active: { creator: 1, total: 1 },
      mrr: [{ currency: "GBP", amountMinor: 3100 }],
    };
    expect(await gauges()).toMatchObject({ ...counted, pending: 1, exact: true });
    await w.t.mutation(internal.metrics.foldSubscriptionTotals, {});
    expect(await rows()).toMatchObject({ totals: [{ active: { creator: 1 } }], deltas: [] });
    expect(await gauges()).toMatchObject({ ...counted, pending: 0, exact: true });
    await as.mutation(api.subscriptions.cancel, {});
    await w.at(END0);
    expect((await w.state(userId)).sub).toMatchObject({ status: "canceled" });
    // The period end took it out by a delta; the folded row is as it was.
    expect((await rows()).totals).toMatchObject([{ active: { creator: 1 } }]);
    expect(await gauges()).toMatchObject({
      active: { creator: 0, total: 0 },
      mrr: [{ currency: "GBP", amountMinor: 0 }],
      pending: 1,
      exact: true,
    });
    await checkInvariants(w.t);
  });

  test("a renewal superseded by the customer's cancel is not a failed renewal", async () => {
    const w = await billingWorld(START);
    const { as, userId } = await subscriber(w);
    await w.t.mutation(internal.users.setRole, { userId, role: "admin" });
    await w.at(END0 - 3 * DAY);
    await as.mutation(api.subscriptions.cancel, {});
    const overview = await as.query(api.metrics.overview, {
      hours: 720,
      endHour: Math.floor((END0 - 3 * DAY) / HOUR) * HOUR,
    });
    expect(overview.subscriptions).toMatchObject({ renewalsFailed: 0, renewalsPaid: 0 });
  });

  test("credits lost to the rollover cap count as expired", async () => {
    const w = await billingWorld(START);
    const { as, userId } = await subscriber(w, "studio");
    await w.t.mutation(internal.users.setRole, { userId, role: "admin" });
    await as.mutation(api.subscriptions.changePlan, { planName: "starter" });
    await paidRenewal(w, userId);
    await w.at(END0);
    const overview = await as.query(api.metrics.overview, {
      hours: 720,
      endHour: Math.floor(END0 / HOUR) * HOUR,
    });
    expect(overview.credits.expired).toBe(500 - 80);
    expect((await w.state(userId)).user.credits).toBe(80 + 80 + 80);
  });
});
