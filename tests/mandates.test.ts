/**
 * TrueLayer mandates (auto-renewal), offline: set-up, authorisation, failure and revocation by
 * signed webhooks (replayed, reordered), cancelling, TrueLayer down, the feature off.
 */
import { afterEach, beforeAll, beforeEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import { MANDATE_REUSE_MS, authorizedMandate, currentMandate } from "../convex/model/mandates";
import { billingWorld } from "./support/billing";
import {
  expectCode,
  finishDueScheduledFunctions,
  setup,
  signUp,
  type TestConvex,
} from "./support/setup";
import {
  TOKEN_URL,
  deliverTrueLayer,
  generateEs512Key,
  stubTrueLayerEnv,
  trueLayerNetwork,
  verifyMerchantSignature,
  type EcKey,
} from "./support/truelayer";
import {
  MANDATES_URL,
  authorizeByWebhook,
  deliverMandateEvent,
  mandateEvent,
  revokeMandateUrl,
  stubMandateApi,
  type MandateApi,
} from "./support/trueLayerMandates";

let trueLayerKey: EcKey;
let merchantKey: EcKey;

beforeAll(() => {
  trueLayerKey = generateEs512Key("tl-webhooks-mandates");
  merchantKey = generateEs512Key("merchant-kid");
});

beforeEach(() => {
  stubTrueLayerEnv(merchantKey);
  vi.stubEnv("TRUELAYER_MANDATE_TYPE", "sweeping");
  vi.stubEnv("TRUELAYER_RETURN_URI", "https://app.example.com/billing");
});

afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllEnvs();
  vi.unstubAllGlobals();
});

/** A signed-up user on an active creator subscription (an operator's comp), TrueLayer stubbed. */
async function subscriber(clerkId = "user_1") {
  const t = await setup();
  // TrueLayer's sandbox (token, JWKS), with its mandate API on top.
  const network = trueLayerNetwork(trueLayerKey);
  const tl = stubMandateApi();
  const { as, userId } = await signUp(t, clerkId);
  await t.mutation(internal.users.updateUserPlan, { userId, planName: "creator" });
  return { t, tl, network, as, userId };
}

const mandatesOf = (t: TestConvex, userId: Id<"users">) =>
  t.run(
    async (ctx) =>
      await ctx.db
        .query("mandates")
        .withIndex("by_userId", (q) => q.eq("userId", userId))
        .collect(),
  );

const webhookEvents = (t: TestConvex) =>
  t.run(async (ctx) => await ctx.db.query("webhookEvents").collect());

const creates = (tl: MandateApi) => tl.requests.filter((r) => r.url === MANDATES_URL);

describe("setUpAutoRenewal", () => {
  test("creates a signed, idempotent mandate covering the dearest plan; authorised by webhook, get() shows it", async () => {
    const { t, tl, network, as, userId } = await subscriber();
    const result = await as.action(api.subscriptions.setUpAutoRenewal, {});
    const [row] = await mandatesOf(t, userId);
    expect(result).toEqual({
      mandateId: row._id,
      type: "sweeping",
      maxAmount: 6000,
      periodicLimit: 12000,
      currency: "GBP",
      environment: "sandbox",
      trueLayerMandateId: "tl-mandate-1",
      resourceToken: "token-tl-mandate-1",
      hostedPaymentPageUrl:
        "https://payment.truelayer-sandbox.com/mandates#mandate_id=tl-mandate-1&resource_token=token-tl-mandate-1&return_uri=https%3A%2F%2Fapp.example.com%2Fbilling",
    });
    expect(row).toMatchObject({
      status: "authorization_required",
      trueLayerMandateId: "tl-mandate-1",
    });

    const [create] = creates(tl);
    verifyMerchantSignature(create, merchantKey);
    expect(create.headers["idempotency-key"]).toBe(row._id);
    expect(JSON.parse(create.body)).toEqual({
      mandate: {
        type: "sweeping",
        provider_selection: { type: "user_selected" },
        beneficiary: { type: "merchant_account", merchant_account_id: "merchant-account-1" },
      },
      currency: "GBP",
      user: { name: "user_1@example.com", email: "user_1@example.com" },
      constraints: {
        maximum_individual_amount: 6000,
        periodic_limits: { month: { maximum_amount: 12000, period_alignment: "consent" } },
      },
      metadata: { cineweave_mandate_id: row._id },
    });
    const token = network.find((r) => r.url === TOKEN_URL)!;
    expect(new URLSearchParams(token.body).get("scope")).toBe(
      "payments recurring_payments:sweeping",
    );

    expect((await as.query(api.subscriptions.get, {}))?.mandate).toEqual({
      status: "authorization_required",
      type: "sweeping",
      maxAmount: 6000,
      createdAt: row.createdAt,
    });
    expect(await authorizeByWebhook(t, trueLayerKey, "tl-mandate-1")).toEqual({
      status: 200,
      body: { outcome: "applied", message: "Mandate authorized." },
    });
    expect((await as.query(api.subscriptions.get, {}))?.mandate?.status).toBe("authorized");
    const authorized = await t.run(async (ctx) => await authorizedMandate(ctx, userId));
    expect(authorized).toMatchObject({
      _id: row._id,
      trueLayerMandateId: "tl-mandate-1",
      authorizedAt: Date.parse("2026-05-01T10:00:00.000Z"),
    });
    // The page's token is of no use once authorised.
    expect(authorized?.resourceToken).toBeUndefined();
  });

  test("a returnUri argument is the page's return address; a bad one is refused", async () => {
    const { as } = await subscriber();
    const result = await as.action(api.subscriptions.setUpAutoRenewal, {
      returnUri: "http://localhost:3000/done",
    });
    expect(result.hostedPaymentPageUrl).toContain(
      "return_uri=http%3A%2F%2Flocalhost%3A3000%2Fdone",
    );
    for (const returnUri of ["javascript:alert(1)", "http://evil.example.com/", "/relative", ""]) {
      await expectCode(
        as.action(api.subscriptions.setUpAutoRenewal, { returnUri }),
        "INVALID_ARGUMENT",
      );
    }
  });

  test("a repeat call while awaiting authorisation returns the same mandate, with no TrueLayer call", async () => {
    vi.useFakeTimers({ now: Date.parse("2026-05-01T09:00:00Z") });
    const { t, tl, as, userId } = await subscriber();
    const first = await as.action(api.subscriptions.setUpAutoRenewal, {});
    // More repeats than the rate limit allows set-ups: reuses take no token.
    for (let i = 0; i < 5; i++) {
      expect(await as.action(api.subscriptions.setUpAutoRenewal, {})).toEqual(first);
    }
    expect(creates(tl)).toHaveLength(1);
    expect(await mandatesOf(t, userId)).toHaveLength(1);

    // Past the page's validity, a new mandate replaces the abandoned one: one live at a time.
    vi.advanceTimersByTime(MANDATE_REUSE_MS);
    const second = await as.action(api.subscriptions.setUpAutoRenewal, {});
    expect(second.trueLayerMandateId).toBe("tl-mandate-2");
    const rows = await mandatesOf(t, userId);
    expect(rows.map((m) => m.status)).toEqual(["failed", "authorization_required"]);
    expect(rows[0].failureReason).toMatch(/^abandoned/);
    expect((await t.run(async (ctx) => await currentMandate(ctx, userId)))?._id).toBe(
      second.mandateId,
    );
  });

  test("new set-ups are rate-limited per user, nothing written when refused", async () => {
    const { t, as, userId } = await subscriber();
    for (let i = 1; i <= 3; i++) {
      await as.action(api.subscriptions.setUpAutoRenewal, {});
      await deliverMandateEvent(t, trueLayerKey, "mandate_failed", `tl-mandate-${i}`);
    }
    const before = await mandatesOf(t, userId);
    await expectCode(as.action(api.subscriptions.setUpAutoRenewal, {}), "RATE_LIMITED");
    expect(await mandatesOf(t, userId)).toEqual(before);
  });

  test("refused while a mandate is authorised", async () => {
    const { t, tl, as } = await subscriber();
    await as.action(api.subscriptions.setUpAutoRenewal, {});
    await authorizeByWebhook(t, trueLayerKey, "tl-mandate-1");
    await expectCode(as.action(api.subscriptions.setUpAutoRenewal, {}), "CONFLICT");
    expect(creates(tl)).toHaveLength(1);
  });

  test("TrueLayer down at creation: the mandate fails, nothing half-written, a retry works", async () => {
    const { t, tl, as, userId } = await subscriber();
    tl.down = true;
    await expectCode(as.action(api.subscriptions.setUpAutoRenewal, {}), "PAYMENT_PROVIDER_ERROR");
    // The same Idempotency-Key on the backend's one retry.
    const keys = creates(tl).map((r) => r.headers["idempotency-key"]);
    expect(keys).toHaveLength(2);
    expect(new Set(keys).size).toBe(1);
    const [failed] = await mandatesOf(t, userId);
    expect(failed).toMatchObject({ status: "failed", failureReason: expect.stringMatching(/503/) });
    expect(failed.trueLayerMandateId).toBeUndefined();
    expect(failed.resourceToken).toBeUndefined();
    expect((await as.query(api.subscriptions.get, {}))?.mandate?.status).toBe("failed");

    tl.down = false;
    const retried = await as.action(api.subscriptions.setUpAutoRenewal, {});
    expect(retried.trueLayerMandateId).toBe("tl-mandate-1");
    expect((await mandatesOf(t, userId)).map((m) => m.status)).toEqual([
      "failed",
      "authorization_required",
    ]);
  });

  test("off without TRUELAYER_MANDATE_TYPE (or with a wrong one): UNAVAILABLE, nothing written", async () => {
    const { t, tl, network, as, userId } = await subscriber();
    for (const value of ["", "weekly"]) {
      vi.stubEnv("TRUELAYER_MANDATE_TYPE", value);
      await expectCode(as.action(api.subscriptions.setUpAutoRenewal, {}), "UNAVAILABLE");
    }
    expect(await mandatesOf(t, userId)).toEqual([]);
    expect([...network, ...tl.requests]).toEqual([]);
    expect((await as.query(api.subscriptions.get, {}))?.mandate).toBeNull();
  });

  test("each type asks for its own token scope", async () => {
    for (const [type, scope] of [
      ["commercial", "payments recurring_payments:commercial"],
      ["direct_debit", "payments"],
    ] as const) {
      vi.stubEnv("TRUELAYER_MANDATE_TYPE", type);
      const { tl, network, as } = await subscriber();
      expect((await as.action(api.subscriptions.setUpAutoRenewal, {})).type).toBe(type);
      expect(JSON.parse(creates(tl)[0].body).mandate.type).toBe(type);
      const token = network.find((r) => r.url === TOKEN_URL)!;
      expect(new URLSearchParams(token.body).get("scope")).toBe(scope);
    }
  });
});

describe("mandate webhooks", () => {
  async function authorised() {
    const world = await subscriber();
    await world.as.action(api.subscriptions.setUpAutoRenewal, {});
    await authorizeByWebhook(world.t, trueLayerKey, "tl-mandate-1");
    return world;
  }

  test("mandate_failed: the mandate fails with TrueLayer's reason; a revocation after it does nothing", async () => {
    const { t, as, userId } = await subscriber();
    await as.action(api.subscriptions.setUpAutoRenewal, {});
    const failed = await deliverMandateEvent(t, trueLayerKey, "mandate_failed", "tl-mandate-1");
    expect(failed.body).toMatchObject({ outcome: "applied" });
    const revoked = await deliverMandateEvent(t, trueLayerKey, "mandate_revoked", "tl-mandate-1");
    expect(revoked).toMatchObject({ status: 200, body: { outcome: "ignored" } });
    const [row] = await mandatesOf(t, userId);
    expect(row).toMatchObject({
      status: "failed",
      failureReason: "authorization_failed",
      endedAt: Date.parse("2026-05-01T10:00:00.000Z"),
    });
    expect(row.resourceToken).toBeUndefined();
    expect((await as.query(api.subscriptions.get, {}))?.mandate?.status).toBe("failed");
    // A failed mandate does not block a new set-up.
    expect((await as.action(api.subscriptions.setUpAutoRenewal, {})).trueLayerMandateId).toBe(
      "tl-mandate-2",
    );
  });

  test("mandate_revoked (the user at their bank): revoked, no longer authorised", async () => {
    const { t, as, userId } = await authorised();
    const revoked = await deliverMandateEvent(t, trueLayerKey, "mandate_revoked", "tl-mandate-1");
    expect(revoked.body).toMatchObject({ outcome: "applied", message: "Mandate revoked." });
    expect((await mandatesOf(t, userId))[0]).toMatchObject({
      status: "revoked",
      failureReason: "user",
    });
    expect(await t.run(async (ctx) => await authorizedMandate(ctx, userId))).toBeNull();
    expect((await as.query(api.subscriptions.get, {}))?.mandate?.status).toBe("revoked");
    // A late authorisation of a revoked mandate changes nothing.
    const late = await deliverMandateEvent(
      t,
      trueLayerKey,
      "mandate_authorized",
      "tl-mandate-1",
      "evt-late",
    );
    expect(late.body).toMatchObject({ outcome: "ignored" });
    expect((await mandatesOf(t, userId))[0].status).toBe("revoked");
  });

  test("a replayed event is a duplicate: one event row, one change", async () => {
    const { t, userId } = await authorised();
    const again = await authorizeByWebhook(t, trueLayerKey, "tl-mandate-1");
    expect(again.body).toMatchObject({ outcome: "duplicate" });
    expect((await webhookEvents(t)).map((e) => e.type)).toEqual(["mandate_authorized"]);
    expect((await mandatesOf(t, userId))[0].status).toBe("authorized");
  });

  test("reordered: a revocation that overtook the authorisation still ends the mandate", async () => {
    const { t, as, userId } = await subscriber();
    await as.action(api.subscriptions.setUpAutoRenewal, {});
    await deliverMandateEvent(t, trueLayerKey, "mandate_revoked", "tl-mandate-1");
    const authorizedLate = await authorizeByWebhook(t, trueLayerKey, "tl-mandate-1");
    expect(authorizedLate.body).toMatchObject({ outcome: "ignored" });
    expect((await mandatesOf(t, userId))[0].status).toBe("revoked");
    expect(await t.run(async (ctx) => await authorizedMandate(ctx, userId))).toBeNull();
  });

  test("a webhook that beats the creation's answer finds the mandate by the id in its metadata", async () => {
    const { t, userId } = await subscriber();
    const mandateId = await t.run(async (ctx) =>
      ctx.db.insert("mandates", {
        userId,
        type: "sweeping",
        status: "creating",
        currency: "GBP",
        maxAmount: 6000,
        periodicLimit: 12000,
        createdAt: Date.now(),
      }),
    );
    const result = await deliverMandateEvent(
      t,
      trueLayerKey,
      "mandate_authorized",
      "tl-mandate-9",
      "evt-early",
      { metadata: { cineweave_mandate_id: mandateId } },
    );
    expect(result.body).toMatchObject({ outcome: "applied" });
    expect((await mandatesOf(t, userId))[0]).toMatchObject({
      status: "authorized",
      trueLayerMandateId: "tl-mandate-9",
    });
    // The creating action's late answer then changes nothing.
    expect(
      await t.mutation(internal.mandates.attachTrueLayerMandate, {
        mandateId,
        trueLayerMandateId: "tl-mandate-9",
        resourceToken: "late-token",
      }),
    ).toBe(true);
    expect((await mandatesOf(t, userId))[0].status).toBe("authorized");
  });

  test("an unknown mandate id is acknowledged and writes nothing", async () => {
    const { t } = await subscriber();
    const result = await deliverMandateEvent(t, trueLayerKey, "mandate_authorized", "not-ours");
    expect(result).toMatchObject({ status: 200, body: { outcome: "unknown_mandate" } });
    expect(await webhookEvents(t)).toEqual([]);
  });

  test("a malformed mandate event is a 400; an unsigned or forged one a 401; nothing written", async () => {
    const { t, as, userId } = await subscriber();
    await as.action(api.subscriptions.setUpAutoRenewal, {});
    const before = await mandatesOf(t, userId);
    const { mandate_id: _dropped, ...noMandateId } = mandateEvent(
      "mandate_authorized",
      "tl-mandate-1",
      "evt-bad",
    );
    expect((await deliverTrueLayer(t, trueLayerKey, noMandateId)).status).toBe(400);
    const forger = generateEs512Key(trueLayerKey.kid);
    expect(
      (await deliverTrueLayer(t, forger, mandateEvent("mandate_authorized", "tl-mandate-1", "e")))
        .status,
    ).toBe(401);
    const unsigned = await t.fetch("/truelayer/webhook", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(mandateEvent("mandate_authorized", "tl-mandate-1", "e2")),
    });
    expect(unsigned.status).toBe(401);
    expect(await mandatesOf(t, userId)).toEqual(before);
    expect(await webhookEvents(t)).toEqual([]);
  });
});

describe("cancelAutoRenewal", () => {
  test("revokes an authorised mandate with TrueLayer, once; the later webhook changes nothing", async () => {
    const { t, tl, as, userId } = await subscriber();
    await as.action(api.subscriptions.setUpAutoRenewal, {});
    await authorizeByWebhook(t, trueLayerKey, "tl-mandate-1");
    const result = await as.action(api.subscriptions.cancelAutoRenewal, {});
    expect(result.mandate).toMatchObject({ status: "revoked", type: "sweeping" });
    expect(tl.revoked).toEqual(["tl-mandate-1"]);
    const revoke = tl.requests.find((r) => r.url === revokeMandateUrl("tl-mandate-1"))!;
    verifyMerchantSignature(revoke, merchantKey);
    expect((await mandatesOf(t, userId))[0]).toMatchObject({
      status: "revoked",
      failureReason: "client",
    });

    // Idempotent: nothing left to revoke, no TrueLayer call, the same answer.
    expect(await as.action(api.subscriptions.cancelAutoRenewal, {})).toEqual(result);
    expect(tl.revoked).toEqual(["tl-mandate-1"]);
    const webhook = await deliverMandateEvent(t, trueLayerKey, "mandate_revoked", "tl-mandate-1");
    expect(webhook.body).toMatchObject({ outcome: "ignored" });
    expect((await mandatesOf(t, userId))[0].failureReason).toBe("client");
  });

  test("TrueLayer refusing the revocation leaves auto-renewal on", async () => {
    const { t, tl, as, userId } = await subscriber();
    await as.action(api.subscriptions.setUpAutoRenewal, {});
    await authorizeByWebhook(t, trueLayerKey, "tl-mandate-1");
    tl.down = true;
    await expectCode(as.action(api.subscriptions.cancelAutoRenewal, {}), "PAYMENT_PROVIDER_ERROR");
    expect((await mandatesOf(t, userId))[0].status).toBe("authorized");
    tl.down = false;
    await as.action(api.subscriptions.cancelAutoRenewal, {});
    expect((await mandatesOf(t, userId))[0].status).toBe("revoked");
  });

  test("a mandate not authorised yet ends without a TrueLayer call; authorised later, it is revoked", async () => {
    vi.useFakeTimers({ now: Date.parse("2026-05-01T09:00:00Z") });
    const { t, tl, as, userId } = await subscriber();
    await as.action(api.subscriptions.setUpAutoRenewal, {});
    const result = await as.action(api.subscriptions.cancelAutoRenewal, {});
    expect(result.mandate?.status).toBe("failed");
    expect(tl.revoked).toEqual([]);
    // The user finishes TrueLayer's page anyway: the consent is revoked with TrueLayer.
    const late = await authorizeByWebhook(t, trueLayerKey, "tl-mandate-1");
    expect(late.body).toMatchObject({ outcome: "ignored" });
    await finishDueScheduledFunctions(t);
    expect(tl.revoked).toEqual(["tl-mandate-1"]);
    expect((await mandatesOf(t, userId))[0].status).toBe("failed");
  });

  test("a background revocation TrueLayer refuses is tried again later, then logged", async () => {
    vi.useFakeTimers({ now: Date.parse("2026-05-01T09:00:00Z") });
    const { t, tl, as } = await subscriber();
    await as.action(api.subscriptions.setUpAutoRenewal, {});
    await as.action(api.subscriptions.cancelAutoRenewal, {});
    tl.down = true;
    await authorizeByWebhook(t, trueLayerKey, "tl-mandate-1");
    await finishDueScheduledFunctions(t);
    const revokeCalls = () =>
      tl.requests.filter((r) => r.url === revokeMandateUrl("tl-mandate-1")).length;
    // The first try (and signedPost's one immediate retry): refused.
    expect(revokeCalls()).toBe(2);
    vi.advanceTimersByTime(60_000);
    await finishDueScheduledFunctions(t);
    expect(revokeCalls()).toBe(4);
    tl.down = false;
    vi.advanceTimersByTime(10 * 60_000);
    await finishDueScheduledFunctions(t);
    expect(tl.revoked).toEqual(["tl-mandate-1"]);
    // Nothing more is scheduled once it went through.
    vi.advanceTimersByTime(24 * 60 * 60_000);
    await finishDueScheduledFunctions(t);
    expect(revokeCalls()).toBe(5);
  });

  test("a deleted account's authorised mandate is revoked with TrueLayer; a pending one ends", async () => {
    vi.useFakeTimers({ now: Date.parse("2026-05-01T09:00:00Z") });
    const { t, tl, as, userId } = await subscriber();
    await as.action(api.subscriptions.setUpAutoRenewal, {});
    await authorizeByWebhook(t, trueLayerKey, "tl-mandate-1");
    await t.mutation(internal.clerk.applyClerkEvent, {
      eventId: "msg_deleted",
      type: "user.deleted",
      clerkId: "user_1",
    });
    await finishDueScheduledFunctions(t);
    expect(tl.revoked).toEqual(["tl-mandate-1"]);
    expect((await mandatesOf(t, userId))[0]).toMatchObject({
      status: "revoked",
      failureReason: "client",
    });

    const other = await signUp(t, "user_2");
    await t.mutation(internal.users.updateUserPlan, { userId: other.userId, planName: "creator" });
    await other.as.action(api.subscriptions.setUpAutoRenewal, {});
    await t.mutation(internal.clerk.applyClerkEvent, {
      eventId: "msg_deleted_2",
      type: "user.deleted",
      clerkId: "user_2",
    });
    expect((await mandatesOf(t, other.userId))[0]).toMatchObject({
      status: "failed",
      failureReason: "abandoned: the account was deleted",
    });
  });

  test("with no mandate it does nothing", async () => {
    const { tl, network, as } = await subscriber();
    expect(await as.action(api.subscriptions.cancelAutoRenewal, {})).toEqual({ mandate: null });
    expect([...network, ...tl.requests]).toEqual([]);
  });
});

describe("with a paid subscription (tests/support/billing.ts)", () => {
  test("a checkout, then auto-renewal: the mandate API stub composes with billingWorld's TrueLayer", async () => {
    // Two minutes on: the backend refetches TrueLayer's JWKS for billingWorld's webhook key (a
    // kid it has not cached, at most once a minute), which signs differently from this file's.
    const w = await billingWorld(Date.now() + 2 * 60_000);
    const tl = stubMandateApi();
    const { as, userId } = await w.user("user_paid");
    await w.pay(await w.checkout(as, "studio"));
    const setUp = await as.action(api.subscriptions.setUpAutoRenewal, {});
    expect(setUp).toMatchObject({ trueLayerMandateId: "tl-mandate-1", maxAmount: 6000 });
    expect(
      await w.deliver({ type: "mandate_authorized", mandate_id: "tl-mandate-1" }),
    ).toMatchObject({ status: 200, body: { outcome: "applied" } });
    const sub = await as.query(api.subscriptions.get, {});
    expect(sub).toMatchObject({
      status: "active",
      plan: "studio",
      mandate: { status: "authorized" },
    });
    expect(tl.created).toHaveLength(1);
    // The checkout went to the payments stub, the mandate to the mandate stub.
    expect(w.requests.filter((r) => r.url.endsWith("/v3/payments"))).toHaveLength(1);
    expect((await mandatesOf(w.t, userId)).map((m) => m.status)).toEqual(["authorized"]);
  });
});
