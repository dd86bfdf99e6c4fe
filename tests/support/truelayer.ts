import { Buffer } from "node:buffer";
import { generateKeyPairSync, sign as cryptoSign } from "node:crypto";
import { sign, verify, type HttpMethod } from "truelayer-signing";
import { vi } from "vitest";
import type { TestConvex } from "./setup";

/** TrueLayer's sandbox JWKS URL: the only `jku` the sandbox deployment accepts. */
export const SANDBOX_JKU = "https://webhooks.truelayer-sandbox.com/.well-known/jwks";
export const PRODUCTION_JKU = "https://webhooks.truelayer.com/.well-known/jwks";
export const WEBHOOK_PATH = "/truelayer/webhook";

export type EcKey = { kid: string; privateKeyPem: string; publicKeyPem: string; jwk: object };

/** A fresh ES512 (P-521) key pair, as TrueLayer and merchants use. */
export function generateEs512Key(kid: string): EcKey {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "secp521r1" });
  return {
    kid,
    privateKeyPem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
    publicKeyPem: publicKey.export({ format: "pem", type: "spki" }).toString(),
    jwk: { ...publicKey.export({ format: "jwk" }), kid, alg: "ES512", use: "sig" },
  };
}

export function jwksOf(...keys: EcKey[]): string {
  return JSON.stringify({ keys: keys.map((k) => k.jwk) });
}

const base64url = (data: string | Buffer) => Buffer.from(data).toString("base64url");

/**
 * A webhook `Tl-Signature` as TrueLayer sends it: a JWS v2 with a detached payload and a `jku`
 * header. truelayer-signing builds the signed message (method, path, headers, body); its `sign`
 * has no `jku` option, so the header gets the `jku` added and the message is signed with ES512
 * by Node's crypto (JOSE's raw r||s form, as `jws` does). `jku: null` leaves it out.
 */
export async function signWebhook(
  key: EcKey,
  body: string,
  headers: Record<string, string>,
  jku: string | null = SANDBOX_JKU,
  path = WEBHOOK_PATH,
): Promise<string> {
  let message = "";
  await sign({
    kid: key.kid,
    method: "POST" as HttpMethod,
    path,
    headers,
    body,
    signingFunction: async (m) => {
      message = m;
      return "";
    },
  });
  const [headerB64, payloadB64] = message.split(".");
  const header = JSON.parse(Buffer.from(headerB64, "base64url").toString("utf8")) as object;
  const withJku = base64url(JSON.stringify(jku === null ? header : { ...header, jku }));
  const signature = cryptoSign("sha512", Buffer.from(`${withJku}.${payloadB64}`), {
    key: key.privateKeyPem,
    dsaEncoding: "ieee-p1363",
  });
  return `${withJku}..${base64url(signature)}`;
}

/** Delivers a signed TrueLayer webhook to the deployment. */
export async function deliverTrueLayer(
  t: TestConvex,
  key: EcKey,
  event: Record<string, unknown>,
  options: { jku?: string | null; tamper?: (body: string) => string; timestamp?: string } = {},
) {
  const body = JSON.stringify(event);
  const timestamp = options.timestamp ?? new Date().toISOString();
  const signature = await signWebhook(
    key,
    body,
    { "X-TL-Webhook-Timestamp": timestamp },
    options.jku === undefined ? SANDBOX_JKU : options.jku,
  );
  return await t.fetch(WEBHOOK_PATH, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "X-TL-Webhook-Timestamp": timestamp,
      "Tl-Signature": signature,
    },
    body: options.tamper ? options.tamper(body) : body,
  });
}

export const TRUELAYER_ENV = {
  TRUELAYER_ENVIRONMENT: "sandbox",
  TRUELAYER_CLIENT_ID: "cineweave-test",
  TRUELAYER_CLIENT_SECRET: "client-secret",
  TRUELAYER_SIGNING_KEY_ID: "merchant-kid",
  TRUELAYER_MERCHANT_ACCOUNT_ID: "merchant-account-1",
};

/** Sets the TrueLayer env vars; the merchant signing key is `merchantKey`. */
export function stubTrueLayerEnv(merchantKey: EcKey) {
  for (const [name, value] of Object.entries(TRUELAYER_ENV)) {
    vi.stubEnv(name, value);
  }
  vi.stubEnv("TRUELAYER_SIGNING_PRIVATE_KEY", merchantKey.privateKeyPem);
}

export type RecordedRequest = {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: string;
};

type Handler = (request: RecordedRequest) => Response | Promise<Response>;

/**
 * Stubs `fetch` (the network only): routes by URL to `handlers`, records every request, and
 * answers 404 to anything unrouted.
 */
export function stubNetwork(handlers: Record<string, Handler>) {
  const requests: RecordedRequest[] = [];
  vi.stubGlobal("fetch", async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    const headers: Record<string, string> = {};
    request.headers.forEach((value, name) => {
      headers[name] = value;
    });
    const recorded = {
      url: request.url,
      method: request.method,
      headers,
      body: await request.text(),
    };
    requests.push(recorded);
    const handler = handlers[request.url];
    return handler ? await handler(recorded) : new Response("not found", { status: 404 });
  });
  return requests;
}

export const jsonResponse = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

/** Checks a request our backend sent carries a valid Tl-Signature by `merchantKey`. */
export function verifyMerchantSignature(request: RecordedRequest, merchantKey: EcKey) {
  const url = new URL(request.url);
  verify({
    publicKeyPem: merchantKey.publicKeyPem,
    signature: request.headers["tl-signature"],
    method: request.method as HttpMethod,
    path: url.pathname,
    body: request.body,
    headers: request.headers,
    requiredHeaders: ["Idempotency-Key"],
  });
}

export const TOKEN_URL = "https://auth.truelayer-sandbox.com/connect/token";
export const PAYMENTS_URL = "https://api.truelayer-sandbox.com/v3/payments";
export const refundsUrl = (trueLayerPaymentId: string) =>
  `https://api.truelayer-sandbox.com/v3/payments/${trueLayerPaymentId}/refunds`;

/** The network TrueLayer's sandbox would be: token, JWKS and (optionally) more endpoints. */
export function trueLayerNetwork(webhookKey: EcKey, more: Record<string, Handler> = {}) {
  return stubNetwork({
    [SANDBOX_JKU]: () => new Response(jwksOf(webhookKey), { status: 200 }),
    [TOKEN_URL]: () => jsonResponse(200, { access_token: "access-token", expires_in: 3600 }),
    ...more,
  });
}
