"use node";

import { createPublicKey, type JsonWebKey } from "node:crypto";
import { v } from "convex/values";
import { extractJku, extractKid, sign, verify, type HttpMethod } from "truelayer-signing";
import { internalAction } from "./_generated/server";
import { isAppError } from "./lib/errors";
import { mandateScope } from "./lib/trueLayerMandates";
import { mandateTypeValidator } from "./lib/validators";
import {
  TRUELAYER_HOSTS,
  readTrueLayerConfig,
  trueLayerEnvironment,
  type TrueLayerConfig,
} from "./lib/truelayer";

/**
 * TrueLayer calls that need Node's crypto (through `truelayer-signing`): webhook signature
 * verification, payment creation and refund creation. Internal actions only; secrets are read
 * from env vars here and never travel as arguments.
 */

const POST = "POST" as HttpMethod;
/** How long a fetched JWKS is trusted before it is fetched again. */
const JWKS_TTL_MS = 10 * 60 * 1000;
/** An unknown `kid` refetches the JWKS (key rotation), at most this often per `jku`. */
const JWKS_MIN_REFETCH_MS = 60 * 1000;
const MAX_JWKS_BYTES = 64 * 1024;
const REQUEST_TIMEOUT_MS = 15_000;

type CachedJwks = { jwks: string; kids: Set<string>; fetchedAt: number };
/** Module memory: survives between calls while the Node process stays warm. */
const jwksCache = new Map<string, CachedJwks>();
/**
 * Each JWK's public key as PEM, by the JWK's JSON: converted once with Node's crypto rather than
 * on every verification by `truelayer-signing`'s pure-JS `jwk-to-pem` (tens of milliseconds of
 * elliptic-curve arithmetic for a P-521 key).
 */
const pemByJwk = new Map<string, string>();

/** The PEM of the JWK in `jwks` whose `kid` is `kid`; throws when there is none or it is invalid. */
function publicKeyPemFor(jwks: string, kid: string): string {
  const parsed = JSON.parse(jwks) as { keys: Array<{ kid?: unknown }> };
  const jwk = parsed.keys.find((key) => key.kid === kid);
  if (jwk === undefined) {
    throw new Error("no jwk found for signature kid");
  }
  const json = JSON.stringify(jwk);
  let pem = pemByJwk.get(json);
  if (pem === undefined) {
    pem = createPublicKey({ key: jwk as JsonWebKey, format: "jwk" })
      .export({ type: "spki", format: "pem" })
      .toString();
    if (pemByJwk.size >= 16) {
      pemByJwk.clear();
    }
    pemByJwk.set(json, pem);
  }
  return pem;
}

const failure = (reason: string) => ({ ok: false as const, reason });
/** Every call answers `{ ok: false, reason }` instead of throwing for an expected failure. */
const failureValidator = v.object({ ok: v.literal(false), reason: v.string() });
/** Verification could not run (configuration, TrueLayer's keys unreachable): retry later. */
const unavailable = (reason: string) => ({
  ok: false as const,
  reason,
  unavailable: true as const,
});

function describe(error: unknown): string {
  if (isAppError(error)) {
    return error.data.message;
  }
  return error instanceof Error ? error.message : String(error);
}

async function fetchWithTimeout(url: string, init: RequestInit): Promise<Response> {
  return await fetch(url, {
    ...init,
    redirect: "error",
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
}

/** TrueLayer's JWKS from an allow-listed `jku`, cached; refetched for an unknown `kid`. */
async function jwksFor(jku: string, kid: string): Promise<string> {
  const cached = jwksCache.get(jku);
  const age = cached === undefined ? Infinity : Date.now() - cached.fetchedAt;
  if (cached !== undefined) {
    const fresh = cached.kids.has(kid) ? age < JWKS_TTL_MS : age < JWKS_MIN_REFETCH_MS;
    if (fresh) {
      return cached.jwks;
    }
  }
  try {
    const response = await fetchWithTimeout(jku, { headers: { Accept: "application/json" } });
    if (!response.ok) {
      throw new Error(`JWKS fetch answered HTTP ${response.status}`);
    }
    const text = await response.text();
    if (text.length > MAX_JWKS_BYTES) {
      throw new Error("JWKS too large");
    }
    const parsed = JSON.parse(text) as { keys?: Array<{ kid?: unknown }> };
    if (!Array.isArray(parsed.keys)) {
      throw new Error("JWKS has no keys");
    }
    const kids = new Set(
      parsed.keys.map((k) => k.kid).filter((k): k is string => typeof k === "string"),
    );
    jwksCache.set(jku, { jwks: text, kids, fetchedAt: Date.now() });
    return text;
  } catch (error) {
    if (cached !== undefined) {
      // Keep verifying with the last good keys while TrueLayer's endpoint is unreachable.
      console.warn(`Using cached JWKS for ${jku}: ${describe(error)}`);
      return cached.jwks;
    }
    throw error;
  }
}

/**
 * Verifies a TrueLayer webhook's `Tl-Signature` (JWS, ES512, detached payload) over the raw
 * body, the path and the signed headers. The JWKS is fetched only from the `jku` of the
 * configured environment (TRUELAYER_ENVIRONMENT): a signature pointing anywhere else fails.
 */
export const verifyWebhook = internalAction({
  args: {
    path: v.string(),
    headers: v.array(v.object({ name: v.string(), value: v.string() })),
    body: v.string(),
  },
  returns: v.union(
    v.object({ ok: v.literal(true) }),
    failureValidator,
    v.object({ ok: v.literal(false), reason: v.string(), unavailable: v.literal(true) }),
  ),
  handler: async (_ctx, { path, headers, body }) => {
    const headerMap: Record<string, string> = {};
    for (const { name, value } of headers) {
      headerMap[name.toLowerCase()] = value;
    }
    const signature = headerMap["tl-signature"];
    if (!signature) {
      return failure("missing Tl-Signature header");
    }
    let allowedJku: string;
    try {
      allowedJku = TRUELAYER_HOSTS[trueLayerEnvironment()].jku;
    } catch (error) {
      return unavailable(describe(error));
    }
    let jku: string | undefined;
    let kid: string | undefined;
    try {
      jku = extractJku(signature) ?? undefined;
      kid = extractKid(signature) ?? undefined;
    } catch (error) {
      return failure(describe(error));
    }
    if (jku !== allowedJku) {
      return failure(`jku ${jku ?? "(none)"} is not TrueLayer's (${allowedJku})`);
    }
    if (!kid) {
      return failure("signature has no kid");
    }
    let jwks: string;
    try {
      jwks = await jwksFor(jku, kid);
    } catch (error) {
      return unavailable(`TrueLayer's signing keys could not be fetched: ${describe(error)}`);
    }
    try {
      const publicKeyPem = publicKeyPemFor(jwks, kid);
      verify({ publicKeyPem, signature, method: POST, path, body, headers: headerMap });
      return { ok: true as const };
    } catch (error) {
      return failure(describe(error));
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Payments API v3

async function accessToken(config: TrueLayerConfig, scope = "payments"): Promise<string> {
  const response = await fetchWithTimeout(
    `${TRUELAYER_HOSTS[config.environment].auth}/connect/token`,
    {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "client_credentials",
        client_id: config.clientId,
        client_secret: config.clientSecret,
        scope,
      }).toString(),
    },
  );
  if (!response.ok) {
    throw new Error(`token request answered HTTP ${response.status}`);
  }
  const json = (await response.json()) as { access_token?: unknown };
  if (typeof json.access_token !== "string") {
    throw new Error("token response has no access_token");
  }
  return json.access_token;
}

/**
 * POSTs a signed JSON request (`Tl-Signature` over method, path, Idempotency-Key and body).
 * Retries once with the same Idempotency-Key on a network error, 429 or 5xx, so TrueLayer
 * creates the resource at most once. `payload` undefined: an empty body (a revocation); an
 * answer without a body (204) is `{}`.
 */
async function signedPost(
  config: TrueLayerConfig,
  path: string,
  payload: unknown,
  idempotencyKey: string,
  scope = "payments",
): Promise<Record<string, unknown>> {
  const token = await accessToken(config, scope);
  const body = payload === undefined ? "" : JSON.stringify(payload);
  const tlSignature = sign({
    kid: config.signingKeyId,
    privateKeyPem: config.signingPrivateKeyPem,
    method: POST,
    path,
    headers: { "Idempotency-Key": idempotencyKey },
    body,
  });
  let lastError = "";
  for (let attempt = 1; attempt <= 2; attempt++) {
    let response: Response;
    try {
      response = await fetchWithTimeout(`${TRUELAYER_HOSTS[config.environment].api}${path}`, {
        method: "POST",
        headers: {
          Authorization: `Bearer ${token}`,
          "Content-Type": "application/json",
          "Idempotency-Key": idempotencyKey,
          "Tl-Signature": tlSignature,
        },
        body,
      });
    } catch (error) {
      lastError = describe(error);
      continue;
    }
    if (response.ok) {
      const text = await response.text();
      return text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
    }
    const detail = (await response.text()).slice(0, 300);
    lastError = `HTTP ${response.status}${detail ? `: ${detail}` : ""}`;
    if (response.status !== 429 && response.status < 500) {
      break;
    }
  }
  throw new Error(lastError);
}

/** Creates the plan payment with TrueLayer; `ok: false` carries the reason, never a secret. */
export const createPayment = internalAction({
  args: {
    paymentId: v.id("payments"),
    planName: v.string(),
    amountInMinor: v.number(),
    currency: v.string(),
    userName: v.string(),
    userEmail: v.string(),
    idempotencyKey: v.string(),
    /** A payment on this authorised mandate (no user authorisation), not for the hosted page. */
    mandateId: v.optional(v.string()),
  },
  returns: v.union(
    v.object({ ok: v.literal(true), trueLayerPaymentId: v.string(), resourceToken: v.string() }),
    failureValidator,
  ),
  handler: async (_ctx, args) => {
    try {
      const config = readTrueLayerConfig();
      const paymentMethod =
        args.mandateId === undefined
          ? {
              type: "bank_transfer",
              provider_selection: { type: "user_selected" },
              beneficiary: {
                type: "merchant_account",
                merchant_account_id: config.merchantAccountId,
              },
            }
          : // The mandate names the beneficiary and the payer's account.
            { type: "mandate", mandate_id: args.mandateId };
      const created = await signedPost(
        config,
        "/v3/payments",
        {
          amount_in_minor: args.amountInMinor,
          currency: args.currency,
          payment_method: paymentMethod,
          user: { name: args.userName, email: args.userEmail },
          // Echoed back in the payment webhooks: lets a webhook find the payment even if it
          // arrives before the checkout stored TrueLayer's id.
          metadata: { cineweave_payment_id: args.paymentId, plan: args.planName },
        },
        args.idempotencyKey,
      );
      // A payment on a mandate executes without the user: its resource token is not needed.
      const resourceToken =
        typeof created.resource_token === "string"
          ? created.resource_token
          : args.mandateId === undefined
            ? null
            : "";
      if (typeof created.id !== "string" || resourceToken === null) {
        return failure("TrueLayer's answer has no payment id or resource token");
      }
      return { ok: true as const, trueLayerPaymentId: created.id, resourceToken };
    } catch (error) {
      return failure(describe(error));
    }
  },
});

/** Creates a full refund of a TrueLayer payment; `ok: false` carries the reason. */
export const createRefund = internalAction({
  args: {
    trueLayerPaymentId: v.string(),
    amountInMinor: v.number(),
    idempotencyKey: v.string(),
  },
  returns: v.union(v.object({ ok: v.literal(true), refundId: v.string() }), failureValidator),
  handler: async (_ctx, args) => {
    try {
      const config = readTrueLayerConfig();
      const created = await signedPost(
        config,
        `/v3/payments/${encodeURIComponent(args.trueLayerPaymentId)}/refunds`,
        { amount_in_minor: args.amountInMinor, reference: "CineWeave refund" },
        args.idempotencyKey,
      );
      if (typeof created.id !== "string") {
        return failure("TrueLayer's answer has no refund id");
      }
      return { ok: true as const, refundId: created.id };
    } catch (error) {
      return failure(describe(error));
    }
  },
});

/**
 * The amount of one of a payment's refunds, from TrueLayer's refund resource (webhooks of refunds
 * made in TrueLayer Console do not carry it). `ok: false` carries the reason.
 */
export const getRefund = internalAction({
  args: { trueLayerPaymentId: v.string(), trueLayerRefundId: v.string() },
  returns: v.union(
    v.object({ ok: v.literal(true), amountInMinor: v.number() }),
    /** TrueLayer answered 404: it has no such refund of that payment (retrying will not help). */
    v.object({ ok: v.literal(false), reason: v.string(), notFound: v.literal(true) }),
    failureValidator,
  ),
  handler: async (_ctx, { trueLayerPaymentId, trueLayerRefundId }) => {
    try {
      const config = readTrueLayerConfig();
      const token = await accessToken(config);
      const path = `/v3/payments/${encodeURIComponent(trueLayerPaymentId)}/refunds/${encodeURIComponent(trueLayerRefundId)}`;
      const response = await fetchWithTimeout(`${TRUELAYER_HOSTS[config.environment].api}${path}`, {
        headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      });
      if (response.status === 404) {
        return { ...failure("TrueLayer has no such refund (HTTP 404)"), notFound: true as const };
      }
      if (!response.ok) {
        return failure(`refund lookup answered HTTP ${response.status}`);
      }
      const refund = (await response.json()) as { amount_in_minor?: unknown };
      const amount = refund.amount_in_minor;
      if (typeof amount !== "number" || !Number.isSafeInteger(amount) || amount <= 0) {
        return failure("TrueLayer's refund has no amount_in_minor");
      }
      return { ok: true as const, amountInMinor: amount };
    } catch (error) {
      return failure(describe(error));
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Mandates (model/mandates.ts)

/**
 * Creates a payment mandate for the user to authorise on TrueLayer's page: paid into our merchant
 * account, at most `maxAmount` a payment and `periodicLimit` a month of the consent (aligned on
 * the consent's date, not the calendar, so the first month is not pro-rated). `ok: false`
 * carries the reason.
 */
export const createMandate = internalAction({
  args: {
    mandateId: v.id("mandates"),
    type: mandateTypeValidator,
    maxAmount: v.number(),
    periodicLimit: v.number(),
    currency: v.string(),
    userName: v.string(),
    userEmail: v.string(),
  },
  returns: v.union(
    v.object({ ok: v.literal(true), trueLayerMandateId: v.string(), resourceToken: v.string() }),
    failureValidator,
  ),
  handler: async (_ctx, args) => {
    try {
      const config = readTrueLayerConfig();
      const created = await signedPost(
        config,
        "/v3/mandates",
        {
          mandate: {
            type: args.type,
            provider_selection: { type: "user_selected" },
            beneficiary: {
              type: "merchant_account",
              merchant_account_id: config.merchantAccountId,
            },
          },
          currency: args.currency,
          user: { name: args.userName, email: args.userEmail },
          constraints: {
            maximum_individual_amount: args.maxAmount,
            periodic_limits: {
              month: { maximum_amount: args.periodicLimit, period_alignment: "consent" },
            },
          },
          metadata: { cineweave_mandate_id: args.mandateId },
        },
        // Our row's id: a retried call never creates a second mandate.
        args.mandateId,
        mandateScope(args.type),
      );
      if (typeof created.id !== "string" || typeof created.resource_token !== "string") {
        return failure("TrueLayer's answer has no mandate id or resource token");
      }
      return {
        ok: true as const,
        trueLayerMandateId: created.id,
        resourceToken: created.resource_token,
      };
    } catch (error) {
      return failure(describe(error));
    }
  },
});

/** Revokes a mandate with TrueLayer (`POST /v3/mandates/{id}/revoke`); `ok: false` carries the reason. */
export const revokeMandate = internalAction({
  args: { trueLayerMandateId: v.string(), type: mandateTypeValidator, idempotencyKey: v.string() },
  returns: v.union(v.object({ ok: v.literal(true) }), failureValidator),
  handler: async (_ctx, { trueLayerMandateId, type, idempotencyKey }) => {
    try {
      const config = readTrueLayerConfig();
      await signedPost(
        config,
        `/v3/mandates/${encodeURIComponent(trueLayerMandateId)}/revoke`,
        undefined,
        idempotencyKey,
        mandateScope(type),
      );
      return { ok: true as const };
    } catch (error) {
      return failure(describe(error));
    }
  },
});
