import { afterEach, beforeAll, beforeEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import { checkInvariants } from "./support/invariants";
import { expectCode, setup, signUp, type TestConvex } from "./support/setup";

type Client = Awaited<ReturnType<typeof signUp>>["as"];
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
} from "./support/truelayer";

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
  return await t.run(async (ctx) => {
    const ledger = await ctx.db
      .query("ledger")
      .withIndex("by_paymentId", (q) => q.eq("paymentId", paymentId))
      .collect();
    return {
      user: (await ctx.db.get("users", userId))!,
      payment: (await ctx.db.get("payments", paymentId))!,
      reclaims: ledger.filter((row) => row.kind === "void"),
      refunds: await ctx.db
        .query("refunds")
        .withIndex("by_paymentId", (q) => q.eq("paymentId", paymentId))
        .collect(),
    };
  });
}

/** Queues `count` jobs of 15 s (15 credits each): their credits are held, not spent. */
async function holdInJobs(as: Client, count: number) {
  const jobIds: Id<"jobs">[] = [];
  for (let i = 0; i < count; i++) {
    jobIds.push(await as.mutation(api.jobs.createJob, { prompt: `job ${i}`, durationSec: 15 }));
  }
  return jobIds;
}

/** Spends `15 * count` credits: jobs that run and finish (settled for good). */
async function spendInJobs(t: TestConvex, as: Client, count: number) {
  for (const jobId of await holdInJobs(as, count)) {
    await t.mutation(internal.jobs.updateJobStatus, { jobId, status: "running" });
    await t.mutation(internal.jobs.updateJobStatus, {
      jobId,
      status: "done",
      r2Url: "https://videos.example.com/v.mp4",
    });
  }
}

describe("refundPayment (operators)", () => {
  test("records the refund, asks TrueLayer for a signed, idempotent full refund, pending", async () => {
    const t = await setup();
    const { userId, paymentId, requests } = await paidUser(t);
    const result = await t.action(internal.payments.refundPayment, { paymentId });
    expect(result).toMatchObject({ trueLayerRefundId: "tl-refund-1", amount: 3100 });
    const request = requests.find((r) => r.url === refundsUrl("tl-pay-1"))!;
    verifyMerchantSignature(request, merchantKey);
    expect(request.headers.authorization).toBe("Bearer access-token");
    // The refund row's id is the Idempotency-Key: a retried call cannot refund twice.
    expect(request.headers["idempotency-key"]).toBe(result.refundId);
    expect(JSON.parse(request.body)).toEqual({
      amount_in_minor: 3100,
      reference: "CineWeave refund",
    });
    const { user, payment, reclaims, refunds } = await state(t, userId, paymentId);
    expect(payment).toMatchObject({ refundStatus: "pending", refundedAmount: 0 });
    expect(refunds).toMatchObject([
      { _id: result.refundId, trueLayerRefundId: "tl-refund-1", status: "pending", amount: 3100 },
    ]);
    // Credits move only when the refund executes.
    expect(user.credits).toBe(330);
    expect(reclaims).toHaveLength(0);
  });

  test("refuses payments that were not credited, and more than what is left to refund", async () => {
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
    let refunds = 0;
    trueLayerNetwork(trueLayerKey, {
      [refundsUrl("tl-pay-1")]: () => jsonResponse(201, { id: `tl-refund-${++refunds}` }),
    });
    await t.action(internal.payments.refundPayment, { paymentId, amount: 1000 });
    await expectCode(
      t.action(internal.payments.refundPayment, { paymentId, amount: 2101 }),
      "INVALID_ARGUMENT",
    );
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
      "PAYMENT_PROVIDER_ERROR",
    );
    const { payment, user, refunds } = await state(t, userId, paymentId);
    expect(payment.refundStatus).toBe("failed");
    expect(refunds).toMatchObject([{ status: "failed" }]);
    expect(refunds[0].failureReason).toContain("HTTP 400");
    expect(user.credits).toBe(330);

    answer = jsonResponse(201, { id: "tl-refund-2" });
    expect(await t.action(internal.payments.refundPayment, { paymentId })).toMatchObject({
      trueLayerRefundId: "tl-refund-2",
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
    const { user, payment, reclaims } = await state(t, userId, paymentId);
    expect(user.credits).toBe(80);
    expect(payment).toMatchObject({
      status: "executed",
      refundStatus: "executed",
      refundedAmount: 3100,
      creditsReclaimed: 250,
      outstandingCredits: 0,
    });
    expect(reclaims).toMatchObject([{ delta: -250, balanceAfter: 80, userId }]);
    await checkInvariants(t);
  });

  test("refund_executed after the payment's credits were spent: what is left of its lot goes, the rest is outstanding", async () => {
    const t = await setup();
    const { as, userId, paymentId } = await paidUser(t);
    // 300 spent: the purchase lot (expiring first) entirely, then 50 of the welcome lot.
    await spendInJobs(t, as, 20);
    await t.action(internal.payments.refundPayment, { paymentId });
    await deliverTrueLayer(t, trueLayerKey, refundExecuted("evt-r1"));
    const { user, payment, reclaims, refunds } = await state(t, userId, paymentId);
    // The 30 left are welcome credits: the refund takes back only the payment's own credits.
    expect(user).toMatchObject({ credits: 30 });
    expect(payment).toMatchObject({ creditsReclaimed: 0, outstandingCredits: 250 });
    expect(reclaims).toHaveLength(0);

    const outstanding = await t.query(internal.payments.listOutstandingRefunds, {
      paginationOpts: { numItems: 10, cursor: null },
    });
    expect(outstanding.page).toMatchObject([{ _id: refunds[0]._id, outstandingCredits: 250 }]);
    const listed = await as.query(api.payments.listPayments, {
      paginationOpts: { numItems: 5, cursor: null },
    });
    expect(listed.page).toMatchObject([{ refundStatus: "executed", creditsReclaimed: 0 }]);
    expect(listed.page[0]).not.toHaveProperty("outstandingCredits");
    await checkInvariants(t);
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
    const { user, reclaims } = await state(t, userId, paymentId);
    expect(user.credits).toBe(80);
    expect(reclaims).toHaveLength(1);
  });

  test("refund_failed records the reason and moves no credits; failed stays failed", async () => {
    const t = await setup();
    const { userId, paymentId } = await paidUser(t);
    await t.action(internal.payments.refundPayment, { paymentId });
    const response = await deliverTrueLayer(t, trueLayerKey, refundFailed("evt-r1"));
    expect(await response.json()).toMatchObject({ outcome: "applied" });
    const { user, payment, refunds } = await state(t, userId, paymentId);
    expect(payment.refundStatus).toBe("failed");
    expect(refunds).toMatchObject([{ status: "failed", failureReason: "insufficient_funds" }]);
    expect(user.credits).toBe(330);
    // A late refund_executed for the failed refund changes nothing.
    const late = await deliverTrueLayer(t, trueLayerKey, refundExecuted("evt-r2"));
    expect(await late.json()).toMatchObject({ outcome: "ignored" });
    expect((await state(t, userId, paymentId)).user.credits).toBe(330);
    await checkInvariants(t);
  });

  test("a refund the bank returns after it executed gives exactly the credits it took back", async () => {
    const t = await setup();
    const { userId, paymentId } = await paidUser(t);
    await t.action(internal.payments.refundPayment, { paymentId });
    await deliverTrueLayer(t, trueLayerKey, refundExecuted("evt-r1"));
    await deliverTrueLayer(t, trueLayerKey, refundFailed("evt-r2"));
    const { user, payment } = await state(t, userId, paymentId);
    expect(user.credits).toBe(330);
    expect(payment).toMatchObject({
      refundStatus: "failed",
      refundedAmount: 0,
      creditsReclaimed: 0,
      outstandingCredits: 0,
    });
    const reversals = await t.run(async (ctx) =>
      (await ctx.db.query("ledger").collect()).filter((row) => row.kind === "refund_reversal"),
    );
    expect(reversals).toMatchObject([{ delta: 250, paymentId }]);
    await checkInvariants(t);
  });

  test("a refund made in TrueLayer Console is applied, its amount read from TrueLayer", async () => {
    const t = await setup();
    const { userId, paymentId } = await paidUser(t);
    const requests = trueLayerNetwork(trueLayerKey, {
      [`${refundsUrl("tl-pay-1")}/tl-refund-console`]: () =>
        jsonResponse(200, { id: "tl-refund-console", amount_in_minor: 3100, status: "executed" }),
    });
    await deliverTrueLayer(t, trueLayerKey, refundExecuted("evt-r1", "tl-refund-console"));
    const { user, payment, refunds } = await state(t, userId, paymentId);
    expect(user.credits).toBe(80);
    expect(payment).toMatchObject({ refundStatus: "executed", refundedAmount: 3100 });
    expect(refunds).toMatchObject([{ trueLayerRefundId: "tl-refund-console", origin: "console" }]);
    expect(requests.some((r) => r.url.endsWith("/refunds/tl-refund-console"))).toBe(true);
  });

  test("a Console refund whose amount cannot be read yet is a 503 that writes nothing", async () => {
    const t = await setup();
    const { userId, paymentId } = await paidUser(t);
    trueLayerNetwork(trueLayerKey, {
      // TrueLayer errs (a 404 would be final: see billingSequences.test.ts).
      [`${refundsUrl("tl-pay-1")}/tl-x`]: () => jsonResponse(503, {}),
    });
    const response = await deliverTrueLayer(t, trueLayerKey, refundExecuted("evt-r1", "tl-x"));
    expect(response.status).toBe(503);
    const { user, refunds } = await state(t, userId, paymentId);
    expect(user.credits).toBe(330);
    expect(refunds).toHaveLength(0);
    // TrueLayer retries the same event later; it applies then.
    trueLayerNetwork(trueLayerKey, {
      [`${refundsUrl("tl-pay-1")}/tl-x`]: () => jsonResponse(200, { amount_in_minor: 3100 }),
    });
    const retried = await deliverTrueLayer(t, trueLayerKey, refundExecuted("evt-r1", "tl-x"));
    expect(await retried.json()).toMatchObject({ outcome: "applied" });
    expect((await state(t, userId, paymentId)).user.credits).toBe(80);
  });

  test("partial refunds take back credits in proportion, rounded down, adding up to the whole", async () => {
    const t = await setup();
    const { userId, paymentId } = await paidUser(t);
    // 1001 + 1000 + 1099 = 3100 minor units of 250 credits: 80.7 + 80.6 + 88.6.
    const parts = [1001, 1000, 1099];
    for (const [i, amount] of parts.entries()) {
      const body = { ...refundExecuted(`evt-p${i}`, `tl-part-${i}`), amount_in_minor: amount };
      const response = await deliverTrueLayer(t, trueLayerKey, body);
      expect(await response.json()).toMatchObject({ outcome: "applied" });
    }
    const { user, payment, refunds } = await state(t, userId, paymentId);
    expect(refunds.map((r) => r.creditsDue)).toEqual([80, 81, 89]);
    expect(user.credits).toBe(80);
    expect(payment).toMatchObject({ refundedAmount: 3100, creditsReclaimed: 250 });
    await checkInvariants(t);
  });

  test("our refund's webhook arriving before TrueLayer's answer is stored makes one refund", async () => {
    const t = await setup();
    const { userId, paymentId } = await paidUser(t);
    trueLayerNetwork(trueLayerKey, {
      [refundsUrl("tl-pay-1")]: async () => {
        // TrueLayer executes and notifies while our action still waits for the answer.
        await deliverTrueLayer(t, trueLayerKey, {
          ...refundExecuted("evt-early"),
          amount_in_minor: 3100,
        });
        return jsonResponse(201, { id: "tl-refund-1" });
      },
    });
    await t.action(internal.payments.refundPayment, { paymentId });
    const { user, refunds } = await state(t, userId, paymentId);
    expect(user.credits).toBe(80);
    expect(refunds).toMatchObject([
      { trueLayerRefundId: "tl-refund-1", status: "executed", origin: "operator" },
    ]);
    await checkInvariants(t);
  });

  test("refund events for a payment that was never credited change nothing", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "user_1");
    trueLayerNetwork(trueLayerKey, {
      [PAYMENTS_URL]: () => jsonResponse(201, { id: "tl-pay-1", resource_token: "rt" }),
    });
    const { paymentId } = await as.action(api.payments.createCheckout, { planName: "creator" });
    const response = await deliverTrueLayer(t, trueLayerKey, {
      ...refundExecuted("evt-r1"),
      amount_in_minor: 3100,
    });
    expect(await response.json()).toMatchObject({ outcome: "ignored" });
    const { user } = await state(t, userId, paymentId);
    expect(user.credits).toBe(80);
  });
});

describe("refunds remember which refund failed", () => {
  test("refund_failed, then a Console refund executes: the credits are taken back", async () => {
    const t = await setup();
    const { userId, paymentId } = await paidUser(t);
    await t.action(internal.payments.refundPayment, { paymentId }); // tl-refund-1
    await deliverTrueLayer(t, trueLayerKey, refundFailed("evt-f1"));
    const response = await deliverTrueLayer(t, trueLayerKey, {
      ...refundExecuted("evt-c1", "tl-refund-console"),
      amount_in_minor: 3100,
    });
    expect(await response.json()).toMatchObject({ outcome: "applied" });
    const { user, payment, refunds } = await state(t, userId, paymentId);
    expect(user.credits).toBe(80);
    expect(payment).toMatchObject({ refundStatus: "executed", creditsReclaimed: 250 });
    expect(refunds.map((r) => [r.trueLayerRefundId, r.status])).toEqual([
      ["tl-refund-1", "failed"],
      ["tl-refund-console", "executed"],
    ]);
    await checkInvariants(t);
  });

  test("refund_failed, a retry TrueLayer refuses, then a reordered refund_executed of the failed one: nothing reclaimed", async () => {
    const t = await setup();
    const { userId, paymentId } = await paidUser(t);
    await t.action(internal.payments.refundPayment, { paymentId }); // tl-refund-1
    await deliverTrueLayer(t, trueLayerKey, refundFailed("evt-f1"));
    trueLayerNetwork(trueLayerKey, {
      [refundsUrl("tl-pay-1")]: () => jsonResponse(400, { title: "Refund not allowed" }),
    });
    await expectCode(
      t.action(internal.payments.refundPayment, { paymentId }),
      "PAYMENT_PROVIDER_ERROR",
    );
    const late = await deliverTrueLayer(t, trueLayerKey, refundExecuted("evt-e1"));
    expect(await late.json()).toMatchObject({ outcome: "ignored" });
    const { user, payment, refunds } = await state(t, userId, paymentId);
    expect(user.credits).toBe(330);
    expect(payment).toMatchObject({ refundStatus: "failed", creditsReclaimed: 0 });
    expect(refunds.map((r) => r.status)).toEqual(["failed", "failed"]);
    // The payment can still be refunded.
    trueLayerNetwork(trueLayerKey, {
      [refundsUrl("tl-pay-1")]: () => jsonResponse(201, { id: "tl-refund-3" }),
    });
    expect(await t.action(internal.payments.refundPayment, { paymentId })).toMatchObject({
      trueLayerRefundId: "tl-refund-3",
    });
    await checkInvariants(t);
  });
});

describe("held credits cannot escape a refund", () => {
  test("credits held by jobs when the refund executes are taken as the jobs are canceled", async () => {
    const t = await setup();
    const { as, userId, paymentId } = await paidUser(t);
    const jobIds = await holdInJobs(as, 22);
    expect(await as.query(api.credits.getCredits, {})).toMatchObject({
      credits: 0,
      reserved: 330,
    });
    await t.action(internal.payments.refundPayment, { paymentId });
    await deliverTrueLayer(t, trueLayerKey, refundExecuted("evt-r1"));
    // The purchase lot's 250 credits are all held (the jobs took it first, as it expires
    // first): marked, and voided as the jobs release them.
    expect(await state(t, userId, paymentId)).toMatchObject({
      user: { credits: 0, reservedCredits: 330 },
      payment: { creditsReclaimed: 0, outstandingCredits: 0 },
      refunds: [{ pendingCredits: 250 }],
    });
    for (const jobId of jobIds) {
      await as.mutation(api.jobs.cancelJob, { jobId });
      await checkInvariants(t);
    }
    const { user, payment } = await state(t, userId, paymentId);
    expect(user).toMatchObject({ credits: 80, reservedCredits: 0 });
    expect(payment).toMatchObject({ creditsReclaimed: 250, outstandingCredits: 0 });
    // The ledger shows each step: 16 jobs void 15 each, the 17th voids 10 and releases 5.
    const rows = await t.run(async (ctx) =>
      (await ctx.db.query("ledger").collect()).filter((r) => r.kind === "void"),
    );
    expect(rows.map((r) => r.reservedDelta)).toEqual([...new Array<number>(16).fill(-15), -10]);
  });

  test("a bank-returned refund gives back what it voided from released holds too", async () => {
    const t = await setup();
    const { as, userId, paymentId } = await paidUser(t);
    const jobIds = await holdInJobs(as, 22);
    await t.action(internal.payments.refundPayment, { paymentId });
    await deliverTrueLayer(t, trueLayerKey, refundExecuted("evt-r1"));
    for (const jobId of jobIds.slice(0, 4)) {
      await as.mutation(api.jobs.cancelJob, { jobId });
    }
    await deliverTrueLayer(t, trueLayerKey, refundFailed("evt-r2"));
    const { user } = await state(t, userId, paymentId);
    expect(user).toMatchObject({ credits: 60, reservedCredits: 270 });
    // The rest of the held credits are no longer marked: released, they come back.
    for (const jobId of jobIds.slice(4)) {
      await as.mutation(api.jobs.cancelJob, { jobId });
    }
    expect((await state(t, userId, paymentId)).user).toMatchObject({
      credits: 330,
      reservedCredits: 0,
    });
    await checkInvariants(t);
  });
});

describe("a webhook retried after success credits once", () => {
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
      (await ctx.db.query("ledger").collect()).filter((row) => row.kind === "period"),
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
      "PAYMENT_PROVIDER_ERROR",
    );
    await t.mutation(internal.users.setRole, { userId, role: "admin" });
    expect(await as.query(api.metrics.overview, { hours: 1 })).toMatchObject({
      payments: { succeeded: 0, failed: 1, successRatio: 0 },
    });
  });
});
