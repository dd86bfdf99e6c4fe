import { afterEach, beforeAll, beforeEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import { unusedCreditValue } from "../convex/model/subscriptionQuotes";
import { periodEnd } from "../convex/model/subscriptionState";
import { logged } from "./support/consoleSink";
import { checkInvariants } from "./support/invariants";
import { expectCode, drainRenewalCreations, setup, signUp, type TestConvex } from "./support/setup";
import {
  PAYMENTS_URL,
  deliverTrueLayer,
  generateEs512Key,
  jsonResponse,
  stubTrueLayerEnv,
  trueLayerNetwork,
  type EcKey,
} from "./support/truelayer";

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;
const START = Date.parse("2026-01-31T10:00:00Z");

let trueLayerKey: EcKey;
let merchantKey: EcKey;
let tlPayments = 0;

beforeAll(() => {
  trueLayerKey = generateEs512Key("tl-sub");
  merchantKey = generateEs512Key("merchant-sub");
});
beforeEach(() => {
  vi.useFakeTimers({ now: START });
  stubTrueLayerEnv(merchantKey);
  vi.stubEnv("TRUELAYER_RETURN_URI", "https://app.example.com/billing");
  trueLayerNetwork(trueLayerKey, {
    [PAYMENTS_URL]: () =>
      jsonResponse(201, {
        id: `tl-${++tlPayments}`,
        resource_token: "rt",
        status: "authorization_required",
      }),
  });
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllEnvs();
  vi.unstubAllGlobals();
});

const iso = (ms: number) => new Date(ms).toISOString();

describe("periods from a fixed anchor", () => {
  test.each([
    [
      "2026-01-31T10:00:00Z",
      [
        "2026-02-28",
        "2026-03-31",
        "2026-04-30",
        "2026-05-31",
        "2026-06-30",
        "2026-07-31",
        "2026-08-31",
        "2026-09-30",
        "2026-10-31",
        "2026-11-30",
        "2026-12-31",
        "2027-01-31",
      ],
    ],
    ["2028-01-31T10:00:00Z", ["2028-02-29", "2028-03-31", "2028-04-30"]],
    ["2026-01-30T10:00:00Z", ["2026-02-28", "2026-03-30", "2026-04-30"]],
    ["2026-01-29T10:00:00Z", ["2026-02-28", "2026-03-29"]],
    ["2028-01-29T10:00:00Z", ["2028-02-29", "2028-03-29"]],
    ["2026-01-28T10:00:00Z", ["2026-02-28", "2026-03-28"]],
    ["2025-12-31T10:00:00Z", ["2026-01-31", "2026-02-28", "2026-03-31"]],
  ])("anchored %s: period ends keep the anchor's day, clamped per month", (anchor, ends) => {
    const a = Date.parse(anchor);
    expect(ends.map((_, n) => iso(periodEnd(a, n)))).toEqual(
      ends.map((day) => `${day}T10:00:00.000Z`),
    );
  });

  test("an upgrade is priced from the plan: unused credits valued at its price, half up", () => {
    const creator = { name: "creator", monthlyCredits: 250, price: 3100, markup: 75 } as never;
    expect(unusedCreditValue(250, creator)).toBe(3100);
    expect(unusedCreditValue(1, creator)).toBe(12); // 12.4
    expect(unusedCreditValue(5, creator)).toBe(62);
    expect(unusedCreditValue(0, creator)).toBe(0);
  });
});

/** A signed-up user with an active creator subscription anchored at START. */
async function subscriber(t: TestConvex, plan = "creator") {
  const { as, userId } = await signUp(t, "sub_1");
  const checkout = await as.action(api.payments.createCheckout, { planName: plan });
  await pay(t, checkout.trueLayerPaymentId);
  return { as, userId };
}
async function pay(t: TestConvex, trueLayerPaymentId: string, eventId = `evt-${Math.random()}`) {
  const response = await deliverTrueLayer(t, trueLayerKey, {
    type: "payment_executed",
    event_version: 1,
    event_id: eventId,
    payment_id: trueLayerPaymentId,
  });
  expect(response.status).toBe(200);
  return (await response.json()) as { outcome: string; message: string };
}
/** Moves the clock to `time` and runs what is due then (the sweep behind the scheduler). */
async function at(t: TestConvex, time: number) {
  vi.setSystemTime(time);
  await t.mutation(internal.credits.expireDueLots, {});
  await t.mutation(internal.subscriptions.sweepDue, {});
  await drainRenewalCreations(t);
}
async function state(t: TestConvex, userId: Id<"users">) {
  return await t.run(async (ctx) => ({
    user: (await ctx.db.get("users", userId))!,
    subs: await ctx.db.query("subscriptions").collect(),
    lots: (await ctx.db.query("creditLots").collect()).filter((l) => l.userId === userId),
    payments: await ctx.db.query("payments").collect(),
  }));
}
const renewalOf = async (t: TestConvex, userId: Id<"users">) =>
  (await state(t, userId)).subs.at(-1)!.renewal!;
const tlIdOf = async (t: TestConvex, paymentId: Id<"payments">) =>
  (await t.run(async (ctx) => await ctx.db.get("payments", paymentId)))!.trueLayerTxnId;

describe("a subscription's life", () => {
  test("start: incomplete until paid, then active with period 0's plan lot expiring at its end", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "sub_1");
    const checkout = await as.action(api.payments.createCheckout, { planName: "creator" });
    expect(await as.query(api.subscriptions.get, {})).toMatchObject({ status: "incomplete" });
    await pay(t, checkout.trueLayerPaymentId);
    const sub = await as.query(api.subscriptions.get, {});
    expect(sub).toMatchObject({
      status: "active",
      plan: "creator",
      anchor: START,
      periodIndex: 0,
      currentPeriodStart: START,
      currentPeriodEnd: Date.parse("2026-02-28T10:00:00Z"),
    });
    const { user, lots } = await state(t, userId);
    expect(user).toMatchObject({ plan: "creator", credits: 330 });
    expect(lots.filter((l) => l.source === "period")).toMatchObject([
      { granted: 250, expiresAt: Date.parse("2026-02-28T10:00:00Z") },
    ]);
    await checkInvariants(t);
  });

  test("renewal: created 3 days before the end, paid, the next period granted at its start with a capped rollover", async () => {
    const t = await setup();
    const { as, userId } = await subscriber(t);
    await as.mutation(api.jobs.createJob, { prompt: "x", durationSec: 10 }); // 10 of the plan lot
    const end0 = Date.parse("2026-02-28T10:00:00Z");
    await at(t, end0 - 3 * DAY);
    const renewal = await renewalOf(t, userId);
    expect(renewal).toMatchObject({ status: "pending", amount: 3100, dueAt: end0 });
    expect(renewal.payUrl).toContain("payment_id=");
    const tlId = await tlIdOf(t, renewal.paymentId);
    // Redelivered, and a second event id: granted once.
    await pay(t, tlId, "evt-r1");
    await pay(t, tlId, "evt-r1");
    await pay(t, tlId, "evt-r2");
    expect((await renewalOf(t, userId)).status).toBe("paid");
    expect((await state(t, userId)).lots.filter((l) => l.source === "period")).toHaveLength(1);
    await at(t, end0);
    await at(t, end0); // a period close run twice
    const { subs, lots, user } = await state(t, userId);
    expect(subs.at(-1)).toMatchObject({
      status: "active",
      periodIndex: 1,
      currentPeriodStart: end0,
      currentPeriodEnd: Date.parse("2026-03-31T10:00:00Z"),
      anchor: START,
    });
    const periods = lots.filter((l) => l.source === "period");
    expect(periods.map((l) => [l.granted, l.status])).toEqual([
      [250, "expired"],
      [250, "active"],
    ]);
    // 240 unused (10 held by the job) roll over once, capped at 250, to the next period's end.
    expect(lots.filter((l) => l.source === "rollover")).toMatchObject([
      { granted: 240, expiresAt: Date.parse("2026-03-31T10:00:00Z") },
    ]);
    expect(user.credits).toBe(80 + 240 + 250);
    await checkInvariants(t);
    // The metrics: one renewal paid, one active creator subscription; the plan lot's unused
    // credits rolled over and its held ones stay with their job, so nothing expired.
    await t.mutation(internal.users.setRole, { userId, role: "admin" });
    expect(
      await as.query(api.metrics.overview, { hours: 720, endHour: Math.floor(end0 / HOUR) * HOUR }),
    ).toMatchObject({
      credits: { expired: 0 },
      subscriptions: {
        active: { creator: 1, total: 1 },
        mrr: [{ currency: "GBP", amountMinor: 3100 }],
        renewalsPaid: 1,
        renewalsFailed: 0,
        canceled: 0,
      },
    });
  });

  const orders = [
    ["payment_executed", "payment_settled", "payment_failed"],
    ["payment_executed", "payment_failed", "payment_settled"],
    ["payment_settled", "payment_executed", "payment_failed"],
    ["payment_settled", "payment_failed", "payment_executed"],
    ["payment_failed", "payment_executed", "payment_settled"],
    ["payment_failed", "payment_settled", "payment_executed"],
  ];
  test.each(orders)(
    "renewal webhooks %s, %s, %s (each delivered twice): the next period granted once",
    async (...types) => {
      const t = await setup();
      const { userId } = await subscriber(t);
      const end0 = Date.parse("2026-02-28T10:00:00Z");
      await at(t, end0 - 3 * DAY);
      const renewal = await renewalOf(t, userId);
      const tlId = await tlIdOf(t, renewal.paymentId);
      for (const [i, type] of types.entries()) {
        for (let delivery = 0; delivery < 2; delivery++) {
          const response = await deliverTrueLayer(t, trueLayerKey, {
            type,
            event_version: 1,
            event_id: `evt-order-${i}`,
            payment_id: tlId,
            ...(type === "payment_failed" ? { failure_reason: "authorization_failed" } : {}),
          });
          expect(response.status).toBe(200);
        }
      }
      await at(t, end0);
      await at(t, end0);
      const { subs, lots, payments } = await state(t, userId);
      expect(subs.at(-1)).toMatchObject({ status: "active", periodIndex: 1 });
      expect(lots.filter((l) => l.paymentId === renewal.paymentId)).toMatchObject([
        { source: "period", granted: 250 },
      ]);
      expect(payments.find((p) => p._id === renewal.paymentId)).toMatchObject({
        creditsAdded: 250,
      });
      // Each event's second delivery is logged as a duplicate; a success after the failure is flagged.
      expect(logged("log").filter((line) => line.includes(": duplicate: "))).toHaveLength(3);
      expect(
        logged("warn").some((line) => line.includes("succeeded after being marked failed")),
      ).toBe(types[0] === "payment_failed");
      await checkInvariants(t);
    },
  );

  test("unpaid at the end: past_due with a 7-day grace; paid on its last day: active, anchor dates kept", async () => {
    const t = await setup();
    const { userId } = await subscriber(t);
    const end0 = Date.parse("2026-02-28T10:00:00Z");
    await at(t, end0 - 3 * DAY);
    const renewal = await renewalOf(t, userId);
    await at(t, end0);
    expect((await state(t, userId)).subs.at(-1)).toMatchObject({
      status: "past_due",
      periodIndex: 1,
      graceEndsAt: end0 + 7 * DAY,
    });
    await at(t, end0 + 7 * DAY - 1);
    await pay(t, await tlIdOf(t, renewal.paymentId));
    const { subs, lots } = await state(t, userId);
    expect(subs.at(-1)).toMatchObject({
      status: "active",
      periodIndex: 1,
      currentPeriodStart: end0,
      currentPeriodEnd: Date.parse("2026-03-31T10:00:00Z"),
    });
    expect(lots.filter((l) => l.source === "period" && l.status === "active")).toMatchObject([
      { granted: 250, expiresAt: Date.parse("2026-03-31T10:00:00Z") },
    ]);
    await checkInvariants(t);
  });

  test("a renewal paid one day after the grace starts a new subscription from that moment", async () => {
    const t = await setup();
    const { userId } = await subscriber(t);
    const end0 = Date.parse("2026-02-28T10:00:00Z");
    await at(t, end0 - 3 * DAY);
    const renewal = await renewalOf(t, userId);
    await at(t, end0);
    await at(t, end0 + 7 * DAY);
    expect((await state(t, userId)).subs.at(-1)!.status).toBe("canceled");
    const late = end0 + 8 * DAY;
    await at(t, late);
    await pay(t, await tlIdOf(t, renewal.paymentId));
    const { subs } = await state(t, userId);
    expect(subs.map((s) => s.status)).toEqual(["canceled", "active"]);
    expect(subs[1]).toMatchObject({ anchor: late, periodIndex: 0, currentPeriodStart: late });
    await checkInvariants(t);
  });

  test("cancel stops renewing and rolls nothing over; resume before the end renews again", async () => {
    const t = await setup();
    const { as, userId } = await subscriber(t);
    const end0 = Date.parse("2026-02-28T10:00:00Z");
    expect(await as.mutation(api.subscriptions.cancel, {})).toEqual({
      cancelAtPeriodEnd: true,
      currentPeriodEnd: end0,
      endsAt: end0,
    });
    // Nothing falls due for a subscription that cancels: the sweep has no renewal to look at.
    expect((await state(t, userId)).subs.at(-1)!.renewalDueAt).toBeUndefined();
    await at(t, end0 - 3 * DAY);
    expect((await state(t, userId)).subs.at(-1)!.renewal).toBeUndefined();
    await as.mutation(api.subscriptions.resume, {});
    await at(t, end0 - 2 * DAY);
    expect((await renewalOf(t, userId)).status).toBe("pending");
    await as.mutation(api.subscriptions.cancel, {});
    await at(t, end0);
    const { subs, lots, user } = await state(t, userId);
    expect(subs.at(-1)!.status).toBe("canceled");
    expect(lots.filter((l) => l.source === "rollover")).toHaveLength(0);
    expect(user.credits).toBe(80);
    await checkInvariants(t);
    await t.mutation(internal.users.setRole, { userId, role: "admin" });
    expect(
      await as.query(api.metrics.overview, { hours: 720, endHour: Math.floor(end0 / HOUR) * HOUR }),
    ).toMatchObject({
      credits: { expired: 250 },
      subscriptions: {
        active: { total: 0 },
        mrr: [{ currency: "GBP", amountMinor: 0 }],
        canceled: 1,
      },
    });
  });
});

describe("renewal creation on the workpool", () => {
  test("a TrueLayer blip: the pool tries again with the same idempotency key, one TrueLayer payment", async () => {
    const t = await setup();
    const { userId } = await subscriber(t);
    const end0 = Date.parse("2026-02-28T10:00:00Z");
    const attempts: string[] = [];
    trueLayerNetwork(trueLayerKey, {
      [PAYMENTS_URL]: (request) => {
        attempts.push(request.headers["idempotency-key"]);
        // Each try of createRenewal calls twice (it retries a 503 once): the first try fails.
        return attempts.length <= 2
          ? jsonResponse(503, { title: "Service Unavailable" })
          : jsonResponse(201, {
              id: "tl-renewal",
              resource_token: "rt",
              status: "authorization_required",
            });
      },
    });
    vi.setSystemTime(end0 - 3 * DAY);
    await t.mutation(internal.subscriptions.sweepDue, {});
    const waited = await drainRenewalCreations(t);
    const renewal = await renewalOf(t, userId);
    expect(renewal).toMatchObject({ status: "pending" });
    expect(renewal.payUrl).toContain("tl-renewal");
    expect(await tlIdOf(t, renewal.paymentId)).toBe("tl-renewal");
    expect(attempts).toEqual([renewal.paymentId, renewal.paymentId, renewal.paymentId]);
    // Within seconds (the pool's backoff), not the renewal's 10-minute retry.
    expect(waited).toBeGreaterThan(0);
    expect(waited).toBeLessThan(10_000);
    expect((await state(t, userId)).payments.filter((p) => p.purpose === "renewal")).toHaveLength(
      1,
    );
  });

  test("a renewalDueAt left by older code on a canceling subscription is cleared by the sweep, not picked for ever", async () => {
    const t = await setup();
    const { as, userId } = await subscriber(t);
    const end0 = Date.parse("2026-02-28T10:00:00Z");
    await as.mutation(api.subscriptions.cancel, {});
    const sub = (await state(t, userId)).subs.at(-1)!;
    await t.run(async (ctx) => {
      await ctx.db.patch("subscriptions", sub._id, { renewalDueAt: end0 - 3 * DAY });
    });
    vi.setSystemTime(end0 - 3 * DAY);
    expect(await t.mutation(internal.subscriptions.sweepDue, {})).toEqual({
      handled: 1,
      more: false,
    });
    expect(await t.mutation(internal.subscriptions.sweepDue, {})).toEqual({
      handled: 0,
      more: false,
    });
    const after = (await state(t, userId)).subs.at(-1)!;
    expect(after.renewalDueAt).toBeUndefined();
    expect(after.renewal).toBeUndefined();
  });
});

describe("plan changes", () => {
  test("upgrade: charged the new price minus the unused credits' value; converts them; a new period starts now", async () => {
    const t = await setup();
    const { as, userId } = await subscriber(t);
    await as.mutation(api.jobs.createJob, { prompt: "x", durationSec: 15 }); // 235 unused left
    await at(t, START + 10 * DAY);
    const preview = await as.query(api.subscriptions.previewChange, { planName: "studio" });
    // 235 unused creator credits at 3100 / 250 each = 2914 → 6000 - 2914.
    expect(preview).toMatchObject({ kind: "upgrade", amount: 6000 - 2914, creditsConverted: 235 });
    const checkout = await as.action(api.payments.createCheckout, { planName: "studio" });
    expect(checkout.amount).toBe(6000 - 2914);
    await pay(t, checkout.trueLayerPaymentId);
    const { subs, lots, user } = await state(t, userId);
    expect(subs.at(-1)).toMatchObject({
      plan: "studio",
      anchor: START + 10 * DAY,
      periodIndex: 0,
      currentPeriodEnd: Date.parse("2026-03-10T10:00:00Z"),
    });
    expect(lots.filter((l) => l.source === "upgrade")).toMatchObject([{ granted: 500 }]);
    // The held 15 stay held in the old lot; the converted 235 are gone.
    expect(user).toMatchObject({ credits: 80 + 500, reservedCredits: 15, plan: "studio" });
    await checkInvariants(t);
  });

  test("two upgrades in one period are each priced from the plan, not from the last charge", async () => {
    const t = await setup();
    const { as } = await subscriber(t, "starter");
    const first = await as.query(api.subscriptions.previewChange, { planName: "creator" });
    expect(first.amount).toBe(3100 - 1000); // 80 unused starter credits are worth 1000
    const checkout = await as.action(api.payments.createCheckout, { planName: "creator" });
    await pay(t, checkout.trueLayerPaymentId);
    const second = await as.query(api.subscriptions.previewChange, { planName: "studio" });
    expect(second.amount).toBe(6000 - 3100); // 250 unused creator credits are worth 3100
  });

  test("an upgrade one second before the period end: the old period's close does nothing", async () => {
    const t = await setup();
    const { as, userId } = await subscriber(t);
    const end0 = Date.parse("2026-02-28T10:00:00Z");
    await at(t, end0 - 3 * DAY);
    const pending = await renewalOf(t, userId);
    vi.setSystemTime(end0 - 1000);
    const checkout = await as.action(api.payments.createCheckout, { planName: "studio" });
    await pay(t, checkout.trueLayerPaymentId);
    expect(
      await t.mutation(internal.subscriptions.closePeriod, {
        subscriptionId: (await state(t, userId)).subs.at(-1)!._id,
        periodEnd: end0,
      }),
    ).toBe(false);
    await at(t, end0);
    const { subs, lots } = await state(t, userId);
    expect(subs.at(-1)).toMatchObject({ status: "active", plan: "studio", anchor: end0 - 1000 });
    expect(lots.filter((l) => l.source === "rollover")).toHaveLength(0);
    // The renewal priced for the old plan was dropped; paying it now credits a month, no renewal.
    await pay(t, await tlIdOf(t, pending.paymentId));
    expect((await state(t, userId)).subs).toHaveLength(1);
    await checkInvariants(t);
  });

  test("downgrade waits for the period end; choosing the current plan clears it; upgrades are refused there", async () => {
    const t = await setup();
    const { as, userId } = await subscriber(t, "studio");
    const end0 = Date.parse("2026-02-28T10:00:00Z");
    await expectCode(
      as
        .mutation(api.subscriptions.changePlan, { planName: "studio" })
        .then(() => as.mutation(api.subscriptions.changePlan, { planName: "enterprise" })),
      "NOT_FOUND",
    );
    expect(await as.mutation(api.subscriptions.changePlan, { planName: "starter" })).toEqual({
      pendingPlan: "starter",
      takesEffectAt: end0,
    });
    expect(await as.mutation(api.subscriptions.changePlan, { planName: "studio" })).toEqual({
      pendingPlan: null,
      takesEffectAt: end0,
    });
    await as.mutation(api.subscriptions.changePlan, { planName: "creator" });
    await at(t, end0 - 3 * DAY);
    const renewal = await renewalOf(t, userId);
    expect(renewal.amount).toBe(3100); // the next period is on the downgraded plan
    await pay(t, await tlIdOf(t, renewal.paymentId));
    await at(t, end0);
    const { subs, lots, user } = await state(t, userId);
    expect(subs.at(-1)).toMatchObject({ plan: "creator", periodIndex: 1 });
    expect(user.plan).toBe("creator");
    // The rollover is capped at the new plan's 250 credits.
    expect(lots.filter((l) => l.source === "rollover")).toMatchObject([{ granted: 250 }]);
    await checkInvariants(t);
  });

  test("downgrade then upgrade: the upgrade is priced from the current plan and drops the downgrade", async () => {
    const t = await setup();
    const { as, userId } = await subscriber(t);
    await as.mutation(api.subscriptions.changePlan, { planName: "starter" });
    const preview = await as.query(api.subscriptions.previewChange, { planName: "studio" });
    expect(preview).toMatchObject({ kind: "upgrade", amount: 6000 - 3100, creditsConverted: 250 });
    const checkout = await as.action(api.payments.createCheckout, { planName: "studio" });
    await pay(t, checkout.trueLayerPaymentId);
    const { subs, user } = await state(t, userId);
    expect(subs.at(-1)).toMatchObject({ plan: "studio", periodIndex: 0 });
    expect(subs.at(-1)!.pendingPlan).toBeUndefined();
    expect(user).toMatchObject({ plan: "studio", credits: 80 + 500 });
    await checkInvariants(t);
  });

  test("a checkout of the current or a cheaper plan is refused and points at changePlan", async () => {
    const t = await setup();
    const { as } = await subscriber(t);
    for (const planName of ["creator", "starter"]) {
      const error = await as
        .action(api.payments.createCheckout, { planName })
        .catch((e: unknown) => e);
      expect(error).toMatchObject({ data: { code: "INVALID_ARGUMENT" } });
      expect(JSON.stringify(error)).toContain("subscriptions.changePlan");
    }
  });

  test("an operator's comp (updateUserPlan) starts a new period now on the new plan", async () => {
    const t = await setup();
    const { userId } = await subscriber(t);
    await at(t, START + 5 * DAY);
    await t.mutation(internal.users.updateUserPlan, { userId, planName: "studio" });
    const { subs, user } = await state(t, userId);
    expect(subs.at(-1)).toMatchObject({ plan: "studio", anchor: START + 5 * DAY });
    expect(user).toMatchObject({ plan: "studio", credits: 80 + 500 });
    await checkInvariants(t);
  });
});

describe("a renewal paid before the period ends is never lost", () => {
  const end0 = Date.parse("2026-02-28T10:00:00Z");
  const end1 = Date.parse("2026-03-31T10:00:00Z");
  /** A creator subscriber whose renewal of period 1 is paid, 3 days before period 0 ends. */
  async function paidAhead(t: TestConvex, plan = "creator") {
    const who = await subscriber(t, plan);
    await at(t, end0 - 3 * DAY);
    const renewal = await renewalOf(t, who.userId);
    await pay(t, await tlIdOf(t, renewal.paymentId));
    expect((await renewalOf(t, who.userId)).status).toBe("paid");
    return { ...who, renewal };
  }
  /** An executed refund of `amount` (minor units) of `paymentId`, as TrueLayer reports it. */
  async function refund(t: TestConvex, paymentId: Id<"payments">, amount?: number) {
    const { refundId } = await t.mutation(internal.payments.startRefund, { paymentId, amount });
    const trueLayerRefundId = `rf-${refundId}`;
    await t.mutation(internal.payments.attachRefund, { refundId, trueLayerRefundId });
    const response = await deliverTrueLayer(t, trueLayerKey, {
      type: "refund_executed",
      event_version: 1,
      event_id: `evt-${trueLayerRefundId}`,
      payment_id: await tlIdOf(t, paymentId),
      refund_id: trueLayerRefundId,
    });
    expect(response.status).toBe(200);
  }

  test("canceled after paying: the paid period still begins, and the subscription ends with it", async () => {
    const t = await setup();
    const { as, userId } = await paidAhead(t);
    expect(await as.query(api.subscriptions.previewChange, { planName: "starter" })).toMatchObject({
      kind: "downgrade",
      takesEffectAt: end1,
    });
    expect(await as.mutation(api.subscriptions.cancel, {})).toEqual({
      cancelAtPeriodEnd: true,
      currentPeriodEnd: end0,
      endsAt: end1,
    });
    await at(t, end0);
    let { subs, lots } = await state(t, userId);
    expect(subs.at(-1)).toMatchObject({
      status: "active",
      periodIndex: 1,
      cancelAtPeriodEnd: true,
    });
    // The paid period's lot, and the ending period's unused credits rolled into it.
    expect(lots.filter((l) => l.status === "active").map((l) => [l.source, l.granted])).toEqual([
      ["welcome", 80],
      ["rollover", 250],
      ["period", 250],
    ]);
    await at(t, end1 - 3 * DAY);
    expect((await state(t, userId)).payments.filter((p) => p.purpose === "renewal")).toHaveLength(
      1,
    );
    await at(t, end1);
    ({ subs, lots } = await state(t, userId));
    expect(subs.at(-1)).toMatchObject({ status: "canceled", periodIndex: 1 });
    expect(lots.filter((l) => l.source === "rollover")).toHaveLength(1);
    await checkInvariants(t);
  });

  test("a downgrade chosen after paying waits for the end of the paid period", async () => {
    const t = await setup();
    const { as, userId } = await paidAhead(t, "studio");
    expect(await as.mutation(api.subscriptions.changePlan, { planName: "starter" })).toEqual({
      pendingPlan: "starter",
      takesEffectAt: end1,
    });
    await at(t, end0);
    const { subs, lots, user } = await state(t, userId);
    expect(subs.at(-1)).toMatchObject({ plan: "studio", periodIndex: 1, pendingPlan: "starter" });
    expect(user.plan).toBe("studio");
    // The rollover is capped at the paid period's plan (studio, 500), not the later downgrade's.
    expect(lots.filter((l) => l.source === "rollover")).toMatchObject([{ granted: 500 }]);
    await at(t, end1 - 3 * DAY);
    expect((await renewalOf(t, userId)).amount).toBe(1000);
    await checkInvariants(t);
  });

  test("an upgrade after paying credits the paid renewal as a lot of its own", async () => {
    const t = await setup();
    const { as, userId, renewal } = await paidAhead(t);
    const checkout = await as.action(api.payments.createCheckout, { planName: "studio" });
    await pay(t, checkout.trueLayerPaymentId);
    const { lots, user } = await state(t, userId);
    expect(lots.filter((l) => l.paymentId === renewal.paymentId)).toMatchObject([
      { source: "purchase", granted: 250, status: "active" },
    ]);
    expect(user.credits).toBe(80 + 250 + 500);
    await at(t, end0);
    expect((await state(t, userId)).subs.at(-1)).toMatchObject({ plan: "studio", periodIndex: 0 });
    await checkInvariants(t);
  });

  test("an operator's comp after paying credits the paid renewal too", async () => {
    const t = await setup();
    const { userId, renewal } = await paidAhead(t);
    await t.mutation(internal.users.updateUserPlan, { userId, planName: "studio" });
    const { lots } = await state(t, userId);
    expect(lots.filter((l) => l.paymentId === renewal.paymentId)).toMatchObject([
      { source: "purchase", granted: 250 },
    ]);
    await checkInvariants(t);
  });

  test("refunded before its period begins: other credits untouched, the period grants what is left", async () => {
    const t = await setup();
    const { userId, renewal } = await paidAhead(t);
    await refund(t, renewal.paymentId, 1240); // 40% of 3100: 100 of its 250 credits
    expect((await state(t, userId)).user.credits).toBe(80 + 250);
    expect((await renewalOf(t, userId)).status).toBe("paid");
    await at(t, end0);
    const { lots, subs } = await state(t, userId);
    expect(subs.at(-1)).toMatchObject({ status: "active", periodIndex: 1 });
    expect(lots.filter((l) => l.paymentId === renewal.paymentId)).toMatchObject([
      { source: "period", granted: 150 },
    ]);
    await checkInvariants(t);
  });

  test("refunded in full before its period begins: the period is unpaid (past_due)", async () => {
    const t = await setup();
    const { userId, renewal } = await paidAhead(t);
    await refund(t, renewal.paymentId);
    expect((await state(t, userId)).user.credits).toBe(80 + 250);
    expect((await renewalOf(t, userId)).status).toBe("failed");
    await at(t, end0);
    const { lots, subs } = await state(t, userId);
    expect(subs.at(-1)).toMatchObject({ status: "past_due", periodIndex: 1 });
    expect(lots.filter((l) => l.paymentId === renewal.paymentId)).toHaveLength(0);
    await checkInvariants(t);
  });

  test("a paid period that is over before its close runs (a sweep outage) still credits its payment", async () => {
    const t = await setup();
    const { userId, renewal } = await paidAhead(t);
    await at(t, end1 + HOUR); // nothing ran between: the close of period 0 comes after period 1
    const { lots } = await state(t, userId);
    expect(lots.filter((l) => l.paymentId === renewal.paymentId)).toMatchObject([
      { source: "purchase", granted: 250, status: "active" },
    ]);
    await checkInvariants(t);
  });

  test("a renewal of an earlier anchoring never pays a later period with the same index", async () => {
    const t = await setup();
    const { as, userId } = await subscriber(t, "starter");
    await at(t, end0 - 3 * DAY);
    const stale = await renewalOf(t, userId); // period 1 of the first anchoring, unpaid
    const upgradeAt = end0 - 2 * DAY;
    vi.setSystemTime(upgradeAt);
    const checkout = await as.action(api.payments.createCheckout, { planName: "creator" });
    await pay(t, checkout.trueLayerPaymentId); // anchored again: period 0 until upgradeAt + 1 month
    const newEnd0 = periodEnd(upgradeAt, 0);
    await at(t, newEnd0);
    expect((await state(t, userId)).subs.at(-1)).toMatchObject({
      status: "past_due",
      periodIndex: 1,
    });
    // The old starter renewal (period 1 too, but of the first anchoring) is paid now: credited
    // as a month of its own, and the creator period stays unpaid.
    await pay(t, await tlIdOf(t, stale.paymentId));
    const { subs, lots } = await state(t, userId);
    expect(subs.at(-1)).toMatchObject({ status: "past_due", periodIndex: 1 });
    expect(lots.filter((l) => l.paymentId === stale.paymentId)).toMatchObject([
      { source: "purchase", granted: 80 },
    ]);
    await checkInvariants(t);
  });
});
