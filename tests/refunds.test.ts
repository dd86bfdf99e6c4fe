import { afterEach, beforeAll, beforeEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import { applyCreditChange } from "../convex/model/ledger";
import { expectCode, setup, signUp, type TestConvex } from "./setup";
import {
  PAYMENTS_URL,
  deliverTrueLayer,
  generateEs512Key,
  jsonResponse,
  refundsUrl,
  stubTrueLayerEnv,
  trueLayerNetwork,
  verifyMerchantSignature,
  type EcKey,
} from "./truelayerHelpers";

let trueLayerKey: EcKey;
let merchantKey: EcKey;

beforeAll(() => {
  trueLayerKey = generateEs512Key("tl-webhooks-1");
  merchantKey = generateEs512Key("merchant-kid");
});

beforeEach(() => {
  stubTrueLayerEnv(merchantKey);
});

afterEach(() => {
  vi.unstubAllEnvs();
  vi.unstubAllGlobals();
});

const event = (type: string, eventId: string, fields: Record<string, unknown>) => ({
  type,
  event_version: 1,
  event_id: eventId,
  ...fields,
});
const executed = (eventId: string) =>
  event("payment_executed", eventId, {
    payment_id: "tl-pay-1",
    executed_at: "2024-05-01T10:00:00Z",
  });
const paymentFailed = (eventId: string) =>
  event("payment_failed", eventId, { payment_id: "tl-pay-1", failure_reason: "provider_rejected" });
const refundExecuted = (eventId: string, refundId = "tl-refund-1") =>
  event("refund_executed", eventId, {
    payment_id: "tl-pay-1",
    refund_id: refundId,
    executed_at: "2024-05-02T10:00:00Z",
  });
const refundFailed = (eventId: string, refundId = "tl-refund-1") =>
  event("refund_failed", eventId, {
    payment_id: "tl-pay-1",
    refund_id: refundId,
    failure_reason: "insufficient_funds",
  });

/** A user who bought the creator plan (80 + 250 = 330 credits), payment `tl-pay-1`. */
async function paidUser(t: TestConvex) {
  const { as, userId } = await signUp(t, "user_1");
  const requests = trueLayerNetwork(trueLayerKey, {
    [PAYMENTS_URL]: () =>
      jsonResponse(201, { id: "tl-pay-1", resource_token: "rt", status: "authorization_required" }),
    [refundsUrl("tl-pay-1")]: () => jsonResponse(201, { id: "tl-refund-1" }),
  });
  const { paymentId } = await as.action(api.payments.createCheckout, { planName: "creator" });
  const response = await deliverTrueLayer(t, trueLayerKey, executed("evt-paid"));
  expect(response.status).toBe(200);
  return { as, userId, paymentId, requests };
}

async function state(t: TestConvex, userId: Id<"users">, paymentId: Id<"payments">) {
  return await t.run(async (ctx) => ({
    user: (await ctx.db.get("users", userId))!,
    payment: (await ctx.db.get("payments", paymentId))!,
    refunds: await ctx.db
      .query("ledger")
      .withIndex("by_paymentId", (q) => q.eq("paymentId", paymentId))
      .collect()
      .then((rows) => rows.filter((row) => row.kind === "refund")),
  }));
}

/** Spends credits the way a job reservation does (the jobs module owns the real path). */
async function spend(t: TestConvex, userId: Id<"users">, credits: number) {
  await t.run(async (ctx) => {
    await applyCreditChange(ctx, userId, { delta: -credits, kind: "reserve", note: "a job" });
  });
}

describe("refundPayment (operators)", () => {
  test("asks TrueLayer for a signed, idempotent full refund and marks it pending", async () => {
    const t = await setup();
    const { userId, paymentId, requests } = await paidUser(t);
    expect(await t.action(internal.payments.refundPayment, { paymentId })).toEqual({
      refundId: "tl-refund-1",
    });
    const request = requests.find((r) => r.url === refundsUrl("tl-pay-1"))!;
    verifyMerchantSignature(request, merchantKey);
    expect(request.headers.authorization).toBe("Bearer access-token");
    expect(JSON.parse(request.body)).toEqual({
      amount_in_minor: 3100,
      reference: "CineWeave refund",
    });
    const { user, payment, refunds } = await state(t, userId, paymentId);
    expect(payment).toMatchObject({ refundStatus: "pending", refundId: "tl-refund-1" });
    // Credits move only when the refund executes.
    expect(user.credits).toBe(330);
    expect(refunds).toHaveLength(0);
  });

  test("refuses payments that were not credited, and a second refund while one is open", async () => {
    const t = await setup();
    const { as } = await signUp(t, "user_2");
    trueLayerNetwork(trueLayerKey, {
      [PAYMENTS_URL]: () => jsonResponse(201, { id: "tl-pay-2", resource_token: "rt" }),
    });
    const pending = await as.action(api.payments.createCheckout, { planName: "studio" });
    await expectCode(
      t.action(internal.payments.refundPayment, { paymentId: pending.paymentId }),
      "INVALID_TRANSITION",
    );

    const { paymentId } = await paidUser(t);
    await t.action(internal.payments.refundPayment, { paymentId });
    await expectCode(
      t.action(internal.payments.refundPayment, { paymentId }),
      "INVALID_TRANSITION",
    );
  });

  test("a refund TrueLayer refuses is recorded as failed and can be retried", async () => {
    const t = await setup();
    const { userId, paymentId } = await paidUser(t);
    let answer = jsonResponse(400, { title: "Insufficient balance" });
    trueLayerNetwork(trueLayerKey, { [refundsUrl("tl-pay-1")]: () => answer });
    await expectCode(
      t.action(internal.payments.refundPayment, { paymentId }),
      "INVALID_TRANSITION",
    );
    const { payment, user } = await state(t, userId, paymentId);
    expect(payment.refundStatus).toBe("failed");
    expect(payment.refundFailureReason).toContain("HTTP 400");
    expect(user.credits).toBe(330);

    answer = jsonResponse(201, { id: "tl-refund-2" });
    expect(await t.action(internal.payments.refundPayment, { paymentId })).toEqual({
      refundId: "tl-refund-2",
    });
  });
});

describe("refund webhooks", () => {
  test("refund_executed with the credits unspent takes all of them back", async () => {
    const t = await setup();
    const { userId, paymentId } = await paidUser(t);
    await t.action(internal.payments.refundPayment, { paymentId });
    const response = await deliverTrueLayer(t, trueLayerKey, refundExecuted("evt-r1"));
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ outcome: "applied" });
    const { user, payment, refunds } = await state(t, userId, paymentId);
    expect(user.credits).toBe(80);
    expect(payment).toMatchObject({
      status: "executed",
      refundStatus: "executed",
      creditsReclaimed: 250,
      outstandingCredits: 0,
    });
    expect(refunds).toMatchObject([{ delta: -250, balanceAfter: 80, userId }]);
  });

  test("refund_executed after the credits were spent: balance to zero, the rest outstanding", async () => {
    const t = await setup();
    const { as, userId, paymentId } = await paidUser(t);
    await spend(t, userId, 300); // 330 -> 30
    await t.action(internal.payments.refundPayment, { paymentId });
    await deliverTrueLayer(t, trueLayerKey, refundExecuted("evt-r1"));
    const { user, payment, refunds } = await state(t, userId, paymentId);
    expect(user.credits).toBe(0);
    expect(payment).toMatchObject({ creditsReclaimed: 30, outstandingCredits: 220 });
    expect(refunds).toMatchObject([{ delta: -30, balanceAfter: 0 }]);

    const outstanding = await t.query(internal.payments.listOutstandingRefunds, {
      paginationOpts: { numItems: 10, cursor: null },
    });
    expect(outstanding.page).toMatchObject([{ _id: paymentId, outstandingCredits: 220 }]);
    const listed = await as.query(api.payments.listPayments, {
      paginationOpts: { numItems: 5, cursor: null },
    });
    expect(listed.page).toMatchObject([{ refundStatus: "executed", creditsReclaimed: 30 }]);
  });

  test("refund_executed with nothing left reclaims 0 and records all 250 outstanding", async () => {
    const t = await setup();
    const { userId, paymentId } = await paidUser(t);
    await spend(t, userId, 330);
    await t.action(internal.payments.refundPayment, { paymentId });
    await deliverTrueLayer(t, trueLayerKey, refundExecuted("evt-r1"));
    const { user, payment, refunds } = await state(t, userId, paymentId);
    expect(user.credits).toBe(0);
    expect(payment).toMatchObject({ creditsReclaimed: 0, outstandingCredits: 250 });
    expect(refunds).toMatchObject([{ delta: 0, balanceAfter: 0 }]);
  });

  test("a refund delivered many times (replays and a second event id) is applied once", async () => {
    const t = await setup();
    const { userId, paymentId } = await paidUser(t);
    await t.action(internal.payments.refundPayment, { paymentId });
    const outcomes = [];
    for (const eventId of ["evt-r1", "evt-r1", "evt-r2", "evt-r1"]) {
      const response = await deliverTrueLayer(t, trueLayerKey, refundExecuted(eventId));
      expect(response.status).toBe(200);
      outcomes.push(((await response.json()) as { outcome: string }).outcome);
    }
    expect(outcomes).toEqual(["applied", "duplicate", "ignored", "duplicate"]);
    const { user, refunds } = await state(t, userId, paymentId);
    expect(user.credits).toBe(80);
    expect(refunds).toHaveLength(1);
  });

  test("refund_failed records the reason, moves no credits, and the payment can be refunded again", async () => {
    const t = await setup();
    const { userId, paymentId } = await paidUser(t);
    await t.action(internal.payments.refundPayment, { paymentId });
    const response = await deliverTrueLayer(t, trueLayerKey, refundFailed("evt-r1"));
    expect(await response.json()).toMatchObject({ outcome: "applied" });
    const { user, payment, refunds } = await state(t, userId, paymentId);
    expect(payment).toMatchObject({
      refundStatus: "failed",
      refundFailureReason: "insufficient_funds",
    });
    expect(user.credits).toBe(330);
    expect(refunds).toHaveLength(0);
    // A late refund_executed for the failed refund id changes nothing.
    await deliverTrueLayer(t, trueLayerKey, refundExecuted("evt-r2"));
    expect((await state(t, userId, paymentId)).user.credits).toBe(330);
  });

  test("a refund the bank returns after it executed gives the reclaimed credits back", async () => {
    const t = await setup();
    const { userId, paymentId } = await paidUser(t);
    await t.action(internal.payments.refundPayment, { paymentId });
    await deliverTrueLayer(t, trueLayerKey, refundExecuted("evt-r1"));
    await deliverTrueLayer(t, trueLayerKey, refundFailed("evt-r2"));
    const { user, payment } = await state(t, userId, paymentId);
    expect(user.credits).toBe(330);
    expect(payment).toMatchObject({
      refundStatus: "failed",
      creditsReclaimed: 0,
      outstandingCredits: 0,
    });
    const adjustments = await t.run(async (ctx) =>
      (await ctx.db.query("ledger").collect()).filter((row) => row.kind === "adjustment"),
    );
    expect(adjustments).toMatchObject([{ delta: 250, paymentId }]);
  });

  test("a refund made outside the backend (TrueLayer Console) is still applied", async () => {
    const t = await setup();
    const { userId, paymentId } = await paidUser(t);
    await deliverTrueLayer(t, trueLayerKey, refundExecuted("evt-r1", "tl-refund-console"));
    const { user, payment } = await state(t, userId, paymentId);
    expect(user.credits).toBe(80);
    expect(payment).toMatchObject({ refundId: "tl-refund-console", refundStatus: "executed" });
  });

  test("refund events for a payment that was never credited change nothing", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "user_1");
    trueLayerNetwork(trueLayerKey, {
      [PAYMENTS_URL]: () => jsonResponse(201, { id: "tl-pay-1", resource_token: "rt" }),
    });
    const { paymentId } = await as.action(api.payments.createCheckout, { planName: "creator" });
    const response = await deliverTrueLayer(t, trueLayerKey, refundExecuted("evt-r1"));
    expect(await response.json()).toMatchObject({ outcome: "ignored" });
    const { user, payment } = await state(t, userId, paymentId);
    expect(user.credits).toBe(80);
    expect(payment.refundStatus).toBeUndefined();
  });
});

describe("issue 8: a webhook retried after success credits once", () => {
  test("the same success event delivered five times, interleaved with a failure event", async () => {
    // Incident: a provider retried a payment_executed it thought undelivered, and every retry
    // (plus a stray payment_failed in between) moved the balance again.
    const t = await setup();
    const { as, userId } = await signUp(t, "user_1");
    trueLayerNetwork(trueLayerKey, {
      [PAYMENTS_URL]: () => jsonResponse(201, { id: "tl-pay-1", resource_token: "rt" }),
    });
    const { paymentId } = await as.action(api.payments.createCheckout, { planName: "creator" });
    const deliveries = [
      executed("evt-success"),
      executed("evt-success"),
      paymentFailed("evt-failure"),
      executed("evt-success"),
      paymentFailed("evt-failure"),
      executed("evt-success"),
      executed("evt-success"),
    ];
    for (const delivery of deliveries) {
      const response = await deliverTrueLayer(t, trueLayerKey, delivery);
      expect(response.status).toBe(200);
    }
    const { user, payment } = await state(t, userId, paymentId);
    expect(user).toMatchObject({ credits: 330, plan: "creator" });
    expect(payment).toMatchObject({ status: "executed", creditsAdded: 250 });
    const purchases = await t.run(async (ctx) =>
      (await ctx.db.query("ledger").collect()).filter((row) => row.kind === "purchase"),
    );
    expect(purchases).toMatchObject([{ delta: 250, paymentId }]);
    // The payment metrics count it once too.
    await t.mutation(internal.users.setRole, { userId, role: "admin" });
    expect(await as.query(api.metrics.overview, { hours: 1 })).toMatchObject({
      payments: { succeeded: 1, failed: 0 },
    });
  });

  test("a checkout TrueLayer refuses counts as one failed payment", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "user_1");
    trueLayerNetwork(trueLayerKey, {
      [PAYMENTS_URL]: () => jsonResponse(400, { title: "Invalid Parameters" }),
    });
    await expectCode(
      as.action(api.payments.createCheckout, { planName: "creator" }),
      "INVALID_TRANSITION",
    );
    await t.mutation(internal.users.setRole, { userId, role: "admin" });
    expect(await as.query(api.metrics.overview, { hours: 1 })).toMatchObject({
      payments: { succeeded: 0, failed: 1, successRatio: 0 },
    });
  });
});
