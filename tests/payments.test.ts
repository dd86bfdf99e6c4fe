import { ConvexError } from "convex/values";
import { afterEach, beforeAll, beforeEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import {
  expectCode,
  finishDueScheduledFunctions,
  identityFor,
  setup,
  signUp,
  type TestConvex,
} from "./support/setup";
import {
  PAYMENTS_URL,
  PRODUCTION_JKU,
  SANDBOX_JKU,
  TOKEN_URL,
  WEBHOOK_PATH,
  deliverTrueLayer,
  generateEs512Key,
  jsonResponse,
  signWebhook,
  stubTrueLayerEnv,
  trueLayerNetwork,
  verifyMerchantSignature,
  type EcKey,
  type RecordedRequest,
} from "./support/truelayer";

let trueLayerKey: EcKey; // TrueLayer's webhook signing key (served in its JWKS)
let merchantKey: EcKey; // our request signing key (TRUELAYER_SIGNING_PRIVATE_KEY)
let attackerKey: EcKey;

beforeAll(() => {
  trueLayerKey = generateEs512Key("tl-webhooks-1");
  merchantKey = generateEs512Key("merchant-kid");
  attackerKey = generateEs512Key("tl-webhooks-1"); // same kid, different key
});

beforeEach(() => {
  stubTrueLayerEnv(merchantKey);
});

afterEach(() => {
  vi.unstubAllEnvs();
  vi.unstubAllGlobals();
});

const createdPayment = (id: string) => () =>
  jsonResponse(201, {
    id,
    resource_token: `token-${id}`,
    user: { id: "tl-user" },
    status: "authorization_required",
  });

/** Signs up `clerkId` and starts a checkout TrueLayer accepts as payment `tlPaymentId`. */
async function checkout(t: TestConvex, clerkId: string, planName: string, tlPaymentId: string) {
  const { as, userId } = await signUp(t, clerkId);
  const requests = trueLayerNetwork(trueLayerKey, { [PAYMENTS_URL]: createdPayment(tlPaymentId) });
  const result = await as.action(api.payments.createCheckout, { planName });
  return { as, userId, result, requests };
}

const executed = (tlPaymentId: string, eventId: string) => ({
  type: "payment_executed",
  event_version: 1,
  event_id: eventId,
  payment_id: tlPaymentId,
  payment_method: { type: "bank_transfer" },
  executed_at: "2024-05-01T10:00:00.000Z",
});
const settled = (tlPaymentId: string, eventId: string) => ({
  type: "payment_settled",
  event_version: 1,
  event_id: eventId,
  payment_id: tlPaymentId,
  settled_at: "2024-05-01T10:05:00.000Z",
});
const failed = (tlPaymentId: string, eventId: string) => ({
  type: "payment_failed",
  event_version: 1,
  event_id: eventId,
  payment_id: tlPaymentId,
  failed_stage: "authorizing",
  failure_reason: "authorization_failed",
  failed_at: "2024-05-01T10:00:00.000Z",
});

async function state(t: TestConvex, userId: Id<"users">) {
  return await t.run(async (ctx) => ({
    user: (await ctx.db.get("users", userId))!,
    payments: await ctx.db.query("payments").collect(),
    ledger: await ctx.db.query("ledger").collect(),
    events: await ctx.db.query("webhookEvents").collect(),
  }));
}

describe("createCheckout", () => {
  test("records a pending payment and creates a signed, idempotent TrueLayer payment", async () => {
    const t = await setup();
    const { userId, result, requests } = await checkout(t, "user_1", "creator", "tl-pay-1");
    expect(result).toMatchObject({
      planName: "creator",
      amount: 3100,
      currency: "GBP",
      environment: "sandbox",
      trueLayerPaymentId: "tl-pay-1",
      resourceToken: "token-tl-pay-1",
      hostedPaymentPageUrl: null,
    });
    const { payments, user } = await state(t, userId);
    expect(payments).toMatchObject([
      {
        _id: result.paymentId,
        userId,
        trueLayerTxnId: "tl-pay-1",
        status: "pending",
        planName: "creator",
        amount: 3100,
        currency: "GBP",
        creditsAdded: 0,
      },
    ]);
    expect(user).toMatchObject({ credits: 80, plan: "starter" });

    const token = requests.find((r) => r.url === TOKEN_URL)!;
    expect(Object.fromEntries(new URLSearchParams(token.body))).toEqual({
      grant_type: "client_credentials",
      client_id: "cineweave-test",
      client_secret: "client-secret",
      scope: "payments",
    });
    const create = requests.find((r) => r.url === PAYMENTS_URL)!;
    expect(create.method).toBe("POST");
    expect(create.headers.authorization).toBe("Bearer access-token");
    expect(create.headers["idempotency-key"]).toMatch(/^[0-9a-f-]{36}$/);
    // Throws unless Tl-Signature is our merchant key's ES512 signature over this very request.
    verifyMerchantSignature(create, merchantKey);
    expect(() =>
      verifyMerchantSignature({ ...create, body: create.body.replace("3100", "1") }, merchantKey),
    ).toThrow();
    expect(JSON.parse(create.body)).toEqual({
      amount_in_minor: 3100,
      currency: "GBP",
      payment_method: {
        type: "bank_transfer",
        provider_selection: { type: "user_selected" },
        beneficiary: { type: "merchant_account", merchant_account_id: "merchant-account-1" },
      },
      user: { name: "user_1@example.com", email: "user_1@example.com" },
      metadata: { cineweave_payment_id: result.paymentId, plan: "creator" },
    });
  });

  test("returns a hosted payment page link when TRUELAYER_RETURN_URI is set", async () => {
    vi.stubEnv("TRUELAYER_RETURN_URI", "https://app.example.com/paid");
    const t = await setup();
    const { result } = await checkout(t, "user_1", "studio", "tl-pay-9");
    const url = new URL(result.hostedPaymentPageUrl!);
    expect(url.origin + url.pathname).toBe("https://payment.truelayer-sandbox.com/payments");
    expect(Object.fromEntries(new URLSearchParams(url.hash.slice(1)))).toEqual({
      payment_id: "tl-pay-9",
      resource_token: "token-tl-pay-9",
      return_uri: "https://app.example.com/paid",
    });
  });

  test("a TrueLayer refusal leaves the payment failed, not dangling pending", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "user_1");
    const requests = trueLayerNetwork(trueLayerKey, {
      [PAYMENTS_URL]: () => jsonResponse(400, { title: "Invalid Parameters" }),
    });
    await expectCode(
      as.action(api.payments.createCheckout, { planName: "creator" }),
      "PAYMENT_PROVIDER_ERROR",
    );
    const { payments, user } = await state(t, userId);
    expect(payments).toHaveLength(1);
    expect(payments[0].status).toBe("failed");
    expect(payments[0].failureReason).toContain("HTTP 400");
    expect(user.credits).toBe(80);
    // A 4xx is final: not retried.
    expect(requests.filter((r) => r.url === PAYMENTS_URL)).toHaveLength(1);
  });

  test("a 5xx is retried once with the same Idempotency-Key, then the payment is failed", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "user_1");
    const requests = trueLayerNetwork(trueLayerKey, {
      [PAYMENTS_URL]: () => new Response("upstream down", { status: 503 }),
    });
    await expectCode(
      as.action(api.payments.createCheckout, { planName: "creator" }),
      "PAYMENT_PROVIDER_ERROR",
    );
    const attempts = requests.filter((r) => r.url === PAYMENTS_URL);
    expect(attempts).toHaveLength(2);
    expect(attempts[0].headers["idempotency-key"]).toBe(attempts[1].headers["idempotency-key"]);
    const { payments } = await state(t, userId);
    expect(payments).toMatchObject([{ status: "failed" }]);
  });

  test("an unreachable TrueLayer (fetch throws) leaves the payment failed", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "user_1");
    vi.stubGlobal("fetch", async () => {
      throw new TypeError("fetch failed");
    });
    await expectCode(
      as.action(api.payments.createCheckout, { planName: "studio" }),
      "PAYMENT_PROVIDER_ERROR",
    );
    const { payments } = await state(t, userId);
    expect(payments).toMatchObject([{ status: "failed", failureReason: "fetch failed" }]);
  });

  test("missing TrueLayer configuration is a clear error and writes nothing", async () => {
    vi.stubEnv("TRUELAYER_CLIENT_SECRET", "");
    vi.stubEnv("TRUELAYER_MERCHANT_ACCOUNT_ID", undefined);
    const t = await setup();
    const { as, userId } = await signUp(t, "user_1");
    const error = await as
      .action(api.payments.createCheckout, { planName: "creator" })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConvexError);
    expect((error as ConvexError<{ code: string }>).data.code).toBe("UNAVAILABLE");
    expect((error as ConvexError<{ message: string }>).data.message).toBe(
      "Payments are not configured: set TRUELAYER_CLIENT_SECRET, TRUELAYER_MERCHANT_ACCOUNT_ID (npx convex env set NAME value).",
    );
    expect((await state(t, userId)).payments).toHaveLength(0);
  });

  test("needs a signed-in, existing user and a known plan", async () => {
    const t = await setup();
    trueLayerNetwork(trueLayerKey, { [PAYMENTS_URL]: createdPayment("tl-pay-1") });
    await expectCode(
      t.action(api.payments.createCheckout, { planName: "creator" }),
      "UNAUTHENTICATED",
    );
    const stranger = t.withIdentity(identityFor("user_nobody"));
    await expectCode(
      stranger.action(api.payments.createCheckout, { planName: "creator" }),
      "NOT_FOUND",
    );
    const { as } = await signUp(t, "user_1");
    await expectCode(
      as.action(api.payments.createCheckout, { planName: "enterprise" }),
      "NOT_FOUND",
    );
    const payments = await t.run(async (ctx) => await ctx.db.query("payments").collect());
    expect(payments).toHaveLength(0);
  });
});

describe("listPayments", () => {
  test("the caller's payments only, newest first, paginated", async () => {
    const t = await setup();
    const { as } = await checkout(t, "user_1", "creator", "tl-pay-1");
    trueLayerNetwork(trueLayerKey, { [PAYMENTS_URL]: createdPayment("tl-pay-2") });
    await as.action(api.payments.createCheckout, { planName: "studio" });
    await checkout(t, "user_2", "starter", "tl-pay-3");

    const first = await as.query(api.payments.listPayments, {
      paginationOpts: { numItems: 1, cursor: null },
    });
    expect(first.page.map((p) => p.planName)).toEqual(["studio"]);
    expect(first.isDone).toBe(false);
    const second = await as.query(api.payments.listPayments, {
      paginationOpts: { numItems: 5, cursor: first.continueCursor },
    });
    expect(second.page.map((p) => p.planName)).toEqual(["creator"]);
    expect(second.isDone).toBe(true);
    expect(second.page[0]).not.toHaveProperty("trueLayerTxnId");

    await expectCode(
      t.query(api.payments.listPayments, { paginationOpts: { numItems: 5, cursor: null } }),
      "UNAUTHENTICATED",
    );
    const newcomer = t.withIdentity(identityFor("user_new"));
    expect(
      await newcomer.query(api.payments.listPayments, {
        paginationOpts: { numItems: 5, cursor: null },
      }),
    ).toEqual({ page: [], isDone: true, continueCursor: "" });
  });
});

describe("TrueLayer webhook", () => {
  test("payment_executed credits the plan once, moves the user to it, and records the event", async () => {
    const t = await setup();
    const { as, userId, result } = await checkout(t, "user_1", "creator", "tl-pay-1");
    const response = await deliverTrueLayer(t, trueLayerKey, executed("tl-pay-1", "evt-1"));
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ outcome: "applied" });

    const { user, payments, ledger, events } = await state(t, userId);
    expect(user).toMatchObject({ credits: 330, plan: "creator" });
    expect(payments[0]).toMatchObject({
      status: "executed",
      creditsAdded: 250,
      succeededAt: Date.parse("2024-05-01T10:00:00.000Z"),
    });
    expect(ledger.filter((row) => row.kind === "period")).toMatchObject([
      { delta: 250, balanceAfter: 330, paymentId: result.paymentId, userId },
    ]);
    expect(ledger.filter((row) => row.kind === "plan_change")).toHaveLength(1);
    expect(events).toMatchObject([
      { provider: "truelayer", eventId: "evt-1", type: "payment_executed" },
    ]);

    const listed = await as.query(api.payments.listPayments, {
      paginationOpts: { numItems: 5, cursor: null },
    });
    expect(listed.page).toMatchObject([{ status: "executed", creditsAdded: 250 }]);
  });

  test("a tampered body is refused with 401 and nothing is written", async () => {
    const t = await setup();
    const { userId } = await checkout(t, "user_1", "creator", "tl-pay-1");
    const response = await deliverTrueLayer(t, trueLayerKey, executed("tl-pay-1", "evt-1"), {
      tamper: (body) => body.replace("tl-pay-1", "tl-pay-2"),
    });
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({
      code: "UNAUTHENTICATED",
      message: "Invalid Tl-Signature.",
    });
    const { user, payments, events } = await state(t, userId);
    expect(user.credits).toBe(80);
    expect(payments[0].status).toBe("pending");
    expect(events).toHaveLength(0);
  });

  test("a signature whose jku is not TrueLayer's is refused without fetching that jku", async () => {
    const t = await setup();
    const { userId, requests } = await checkout(t, "user_1", "creator", "tl-pay-1");
    const evilJku = "https://webhooks.truelayer-sandbox.com.evil.example/.well-known/jwks";
    const evil = await deliverTrueLayer(t, attackerKey, executed("tl-pay-1", "evt-1"), {
      jku: evilJku,
    });
    expect(evil.status).toBe(401);
    // Production's JWKS is not trusted by a sandbox deployment either.
    const production = await deliverTrueLayer(t, attackerKey, executed("tl-pay-1", "evt-2"), {
      jku: PRODUCTION_JKU,
    });
    expect(production.status).toBe(401);
    expect(requests.some((r) => r.url === evilJku || r.url === PRODUCTION_JKU)).toBe(false);
    // An attacker's key under TrueLayer's own jku (same kid) fails against TrueLayer's JWKS.
    const forged = await deliverTrueLayer(t, attackerKey, executed("tl-pay-1", "evt-3"));
    expect(forged.status).toBe(401);
    const { user, events } = await state(t, userId);
    expect(user.credits).toBe(80);
    expect(events).toHaveLength(0);
  });

  test("unsigned deliveries, and signatures without a jku or with an unknown kid, are 401", async () => {
    const t = await setup();
    const { userId } = await checkout(t, "user_1", "creator", "tl-pay-1");
    const body = JSON.stringify(executed("tl-pay-1", "evt-1"));
    const unsigned = await t.fetch(WEBHOOK_PATH, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
    });
    expect(unsigned.status).toBe(401);
    expect(await unsigned.json()).toEqual({
      code: "UNAUTHENTICATED",
      message: "Missing Tl-Signature header.",
    });

    const noJku = await deliverTrueLayer(t, trueLayerKey, executed("tl-pay-1", "evt-2"), {
      jku: null,
    });
    expect(noJku.status).toBe(401);
    const strangerKey = generateEs512Key("unknown-kid");
    const unknownKid = await deliverTrueLayer(t, strangerKey, executed("tl-pay-1", "evt-3"));
    expect(unknownKid.status).toBe(401);
    const garbage = await t.fetch(WEBHOOK_PATH, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Tl-Signature": "not-a-jws" },
      body,
    });
    expect(garbage.status).toBe(401);
    expect((await state(t, userId)).user.credits).toBe(80);
  });

  test("a signature for another path is refused", async () => {
    const t = await setup();
    await checkout(t, "user_1", "creator", "tl-pay-1");
    const body = JSON.stringify(executed("tl-pay-1", "evt-1"));
    const timestamp = new Date().toISOString();
    const signature = await signWebhook(
      trueLayerKey,
      body,
      { "X-TL-Webhook-Timestamp": timestamp },
      SANDBOX_JKU,
      "/some/other/hook",
    );
    const response = await t.fetch(WEBHOOK_PATH, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        "Tl-Signature": signature,
        "X-TL-Webhook-Timestamp": timestamp,
      },
      body,
    });
    expect(response.status).toBe(401);
  });

  test("a replayed event is recognised and credits nothing more", async () => {
    const t = await setup();
    const { userId } = await checkout(t, "user_1", "creator", "tl-pay-1");
    const first = await deliverTrueLayer(t, trueLayerKey, executed("tl-pay-1", "evt-1"));
    const replay = await deliverTrueLayer(t, trueLayerKey, executed("tl-pay-1", "evt-1"));
    expect(await first.json()).toMatchObject({ outcome: "applied" });
    expect(replay.status).toBe(200);
    expect(await replay.json()).toMatchObject({ outcome: "duplicate" });
    const { user, ledger, events } = await state(t, userId);
    expect(user.credits).toBe(330);
    expect(ledger.filter((row) => row.kind === "period")).toHaveLength(1);
    expect(events).toHaveLength(1);
  });

  test("event ids are forgotten after 30 days, in bounded batches; a replay after that credits nothing", async () => {
    vi.useFakeTimers({ now: Date.parse("2026-01-01T00:00:00Z") });
    try {
      const t = await setup();
      const { userId } = await checkout(t, "user_1", "creator", "tl-pay-1");
      await deliverTrueLayer(t, trueLayerKey, executed("tl-pay-1", "evt-1"));
      const DAY = 24 * 60 * 60 * 1000;
      vi.setSystemTime(Date.now() + 30 * DAY + 1);
      await t.run(async (ctx) => {
        for (let i = 0; i < 1100; i++) {
          await ctx.db.insert("webhookEvents", {
            provider: "clerk",
            eventId: `msg_${i}`,
            type: "user.updated",
            // 1,000 older than the retention, 100 a day younger than it.
            receivedAt: Date.now() - (i < 1000 ? 31 : 29) * DAY,
          });
        }
      });
      expect(await t.mutation(internal.webhooks.pruneOldEvents, {})).toEqual({
        deleted: 500,
        more: true,
      });
      await finishDueScheduledFunctions(t);
      const left = await t.run(async (ctx) => await ctx.db.query("webhookEvents").collect());
      // The old 1,000 and evt-1 (received 30 days and 1 ms ago) are gone; the young 100 stay.
      expect(left).toHaveLength(100);
      expect(left.every((event) => event.eventId.startsWith("msg_"))).toBe(true);
      // TrueLayer replays the forgotten success: the payment moves once, nothing more is credited.
      const replay = await deliverTrueLayer(t, trueLayerKey, executed("tl-pay-1", "evt-1"));
      expect(await replay.json()).toMatchObject({ outcome: "ignored" });
      expect((await state(t, userId)).user.credits).toBe(330);
    } finally {
      vi.useRealTimers();
    }
  });

  test("payment_failed marks the payment failed with the reason and adds no credits", async () => {
    const t = await setup();
    const { userId } = await checkout(t, "user_1", "creator", "tl-pay-1");
    const response = await deliverTrueLayer(t, trueLayerKey, failed("tl-pay-1", "evt-1"));
    expect(response.status).toBe(200);
    const { user, payments, ledger } = await state(t, userId);
    expect(payments[0]).toMatchObject({
      status: "failed",
      failureReason: "authorization_failed",
      creditsAdded: 0,
    });
    expect(user).toMatchObject({ credits: 80, plan: "starter" });
    expect(ledger.filter((row) => row.kind === "period")).toHaveLength(0);
  });

  test("out of order: payment_failed after payment_executed changes nothing (200, logged)", async () => {
    const t = await setup();
    const { userId } = await checkout(t, "user_1", "creator", "tl-pay-1");
    await deliverTrueLayer(t, trueLayerKey, executed("tl-pay-1", "evt-1"));
    const warn = vi.spyOn(console, "warn");
    const late = await deliverTrueLayer(t, trueLayerKey, failed("tl-pay-1", "evt-2"));
    expect(late.status).toBe(200);
    expect(await late.json()).toMatchObject({ outcome: "ignored" });
    expect(warn.mock.calls.flat().join(" ")).toContain(
      "payment_failed after the payment was executed",
    );
    const { user, payments } = await state(t, userId);
    expect(payments[0]).toMatchObject({ status: "executed", creditsAdded: 250 });
    expect(payments[0].failureReason).toBeUndefined();
    expect(user).toMatchObject({ credits: 330, plan: "creator" });
  });

  test("out of order: payment_settled before payment_executed credits once and stays settled", async () => {
    const t = await setup();
    const { userId } = await checkout(t, "user_1", "studio", "tl-pay-1");
    const first = await deliverTrueLayer(t, trueLayerKey, settled("tl-pay-1", "evt-2"));
    expect(await first.json()).toMatchObject({ outcome: "applied" });
    const second = await deliverTrueLayer(t, trueLayerKey, executed("tl-pay-1", "evt-1"));
    expect(await second.json()).toMatchObject({ outcome: "ignored" });
    const { user, payments, ledger } = await state(t, userId);
    expect(payments[0]).toMatchObject({ status: "settled", creditsAdded: 500 });
    expect(user).toMatchObject({ credits: 580, plan: "studio" });
    expect(ledger.filter((row) => row.kind === "period")).toHaveLength(1);
  });

  test("in order: executed then settled credits once and ends settled", async () => {
    const t = await setup();
    const { userId } = await checkout(t, "user_1", "creator", "tl-pay-1");
    await deliverTrueLayer(t, trueLayerKey, executed("tl-pay-1", "evt-1"));
    const later = await deliverTrueLayer(t, trueLayerKey, settled("tl-pay-1", "evt-2"));
    expect(await later.json()).toMatchObject({ outcome: "applied" });
    const { user, payments } = await state(t, userId);
    expect(payments[0]).toMatchObject({ status: "settled", creditsAdded: 250 });
    expect(user.credits).toBe(330);
  });

  test("an unknown payment id answers 200, is logged, and writes nothing", async () => {
    const t = await setup();
    const { userId } = await checkout(t, "user_1", "creator", "tl-pay-1");
    const warn = vi.spyOn(console, "warn");
    const response = await deliverTrueLayer(t, trueLayerKey, executed("tl-pay-unknown", "evt-1"));
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ outcome: "unknown_payment" });
    expect(warn.mock.calls.flat().join(" ")).toContain(
      "No payment for TrueLayer payment tl-pay-unknown",
    );
    const { user, events } = await state(t, userId);
    expect(user.credits).toBe(80);
    expect(events).toHaveLength(0);
  });

  test("a webhook that beats the checkout to storing TrueLayer's id finds the payment by metadata", async () => {
    const t = await setup();
    const { userId } = await signUp(t, "user_1");
    trueLayerNetwork(trueLayerKey);
    const started = await t.mutation(internal.payments.startCheckout, {
      clerkId: "user_1",
      planName: "creator",
      currency: "GBP",
    });
    const event = {
      ...executed("tl-pay-1", "evt-1"),
      metadata: { cineweave_payment_id: started.paymentId },
    };
    expect(await (await deliverTrueLayer(t, trueLayerKey, event)).json()).toMatchObject({
      outcome: "applied",
    });
    // The checkout action then attaches the same id without complaint.
    await t.mutation(internal.payments.attachTrueLayerPayment, {
      paymentId: started.paymentId,
      trueLayerPaymentId: "tl-pay-1",
      resourceToken: "rt",
    });
    const { user, payments } = await state(t, userId);
    expect(payments[0]).toMatchObject({ trueLayerTxnId: "tl-pay-1", status: "executed" });
    expect(user.credits).toBe(330);
  });

  test("signed but malformed bodies are 400 JSON; unhandled event types are acknowledged", async () => {
    const t = await setup();
    const { userId } = await checkout(t, "user_1", "creator", "tl-pay-1");
    for (const bad of [
      { type: "payment_executed", payment_id: "tl-pay-1" }, // no event_id
      { type: "payment_executed", event_id: "evt-1" }, // no payment_id
      { type: "refund_executed", event_id: "evt-2", payment_id: "tl-pay-1" }, // no refund_id
      ["not", "an", "object"],
    ]) {
      const response = await deliverTrueLayer(
        t,
        trueLayerKey,
        bad as unknown as Record<string, unknown>,
      );
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({ code: "INVALID_ARGUMENT" });
    }
    const body = "{not json";
    const timestamp = new Date().toISOString();
    const notJson = await t.fetch(WEBHOOK_PATH, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        "X-TL-Webhook-Timestamp": timestamp,
        "Tl-Signature": await signWebhook(trueLayerKey, body, {
          "X-TL-Webhook-Timestamp": timestamp,
        }),
      },
      body,
    });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toEqual({
      code: "INVALID_ARGUMENT",
      message: "The body must be valid JSON.",
    });

    const authorized = await deliverTrueLayer(t, trueLayerKey, {
      type: "payment_authorized",
      event_id: "evt-9",
      payment_id: "tl-pay-1",
    });
    expect(authorized.status).toBe(200);
    expect(await authorized.json()).toMatchObject({ outcome: "ignored" });
    const { user, payments, events } = await state(t, userId);
    expect(user.credits).toBe(80);
    expect(payments[0].status).toBe("pending");
    expect(events).toHaveLength(0);
  });

  test("the JWKS is fetched from TrueLayer's jku and cached across deliveries", async () => {
    const t = await setup();
    const { userId, requests } = await checkout(t, "user_1", "creator", "tl-pay-1");
    for (const [i, event] of [executed, settled, executed].entries()) {
      const response = await deliverTrueLayer(t, trueLayerKey, event("tl-pay-1", `evt-${i}`));
      expect(response.status).toBe(200);
    }
    // Module memory keeps the keys: at most one fetch (none if an earlier test cached them).
    expect(
      requests.filter((r: RecordedRequest) => r.url === SANDBOX_JKU).length,
    ).toBeLessThanOrEqual(1);
    expect((await state(t, userId)).user.credits).toBe(330);
  });

  test("concurrent deliveries of one success event credit once", async () => {
    const t = await setup();
    const { userId } = await checkout(t, "user_1", "creator", "tl-pay-1");
    const responses = await Promise.all([
      deliverTrueLayer(t, trueLayerKey, executed("tl-pay-1", "evt-1")),
      deliverTrueLayer(t, trueLayerKey, executed("tl-pay-1", "evt-1")),
      deliverTrueLayer(t, trueLayerKey, settled("tl-pay-1", "evt-2")),
    ]);
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200]);
    const { user, ledger } = await state(t, userId);
    expect(user.credits).toBe(330);
    expect(ledger.filter((row) => row.kind === "period")).toHaveLength(1);
  });
});

describe("what a payment buys is fixed when the customer commits", () => {
  test("re-seeding plans between checkout and success changes neither the price nor the credits", async () => {
    const t = await setup();
    const { userId, result } = await checkout(t, "user_1", "creator", "tl-pay-1");
    expect(result.amount).toBe(3100);
    await t.run(async (ctx) => {
      const plan = await ctx.db
        .query("plans")
        .withIndex("by_name", (q) => q.eq("name", "creator"))
        .unique();
      await ctx.db.patch("plans", plan!._id, { monthlyCredits: 999, price: 1 });
    });
    await deliverTrueLayer(t, trueLayerKey, executed("tl-pay-1", "evt-1"));
    const { user, payments } = await state(t, userId);
    expect(user.credits).toBe(330);
    expect(payments).toMatchObject([
      { amount: 3100, creditsPurchased: 250, creditsAdded: 250, status: "executed" },
    ]);
  });
});

describe("the TrueLayer webhook fails closed on a broken configuration", () => {
  test.each(["staging", " production-ish", ""])(
    "TRUELAYER_ENVIRONMENT=%j: 503 UNAVAILABLE, logged once, nothing written",
    async (environment) => {
      const t = await setup();
      const { userId } = await checkout(t, "user_1", "creator", "tl-pay-1");
      vi.stubEnv("TRUELAYER_ENVIRONMENT", environment);
      const errors = vi.spyOn(console, "error").mockImplementation(() => {});
      const before = await state(t, userId);
      for (const eventId of ["evt-1", "evt-2"]) {
        const response = await deliverTrueLayer(t, trueLayerKey, executed("tl-pay-1", eventId));
        expect(response.status).toBe(503);
        expect(await response.json()).toMatchObject({ code: "UNAVAILABLE" });
      }
      expect(await state(t, userId)).toEqual(before);
      expect(
        errors.mock.calls.filter((call) => String(call[0]).includes("TRUELAYER_ENVIRONMENT")),
      ).toHaveLength(1);
      errors.mockRestore();
    },
  );

  test("TrueLayer's signing keys unreachable: 503 (TrueLayer retries), nothing written", async () => {
    const t = await setup();
    const { userId } = await checkout(t, "user_1", "creator", "tl-pay-1");
    const before = await state(t, userId);
    // Production: its keys were never fetched by this process, so nothing is cached.
    vi.stubEnv("TRUELAYER_ENVIRONMENT", "production");
    stubNetworkDown();
    const response = await deliverTrueLayer(t, trueLayerKey, executed("tl-pay-1", "evt-1"), {
      jku: PRODUCTION_JKU,
    });
    expect(response.status).toBe(503);
    expect(await state(t, userId)).toEqual(before);
  });
});

function stubNetworkDown() {
  vi.stubGlobal("fetch", async () => {
    throw new TypeError("fetch failed");
  });
}
