import type { TestConvex } from "./setup";
import { vi } from "vitest";
import { deliverTrueLayer, jsonResponse, type EcKey, type RecordedRequest } from "./truelayer";

/**
 * TrueLayer's mandate API as tests see it (offline): `POST /v3/mandates` creates a mandate
 * awaiting authorisation, `POST /v3/mandates/{id}/revoke` revokes it; authorisation, failure and
 * revocation at the bank arrive as signed webhooks (`mandateEvent`, `deliverMandateEvent`).
 */

export const MANDATES_URL = "https://api.truelayer-sandbox.com/v3/mandates";
export const revokeMandateUrl = (trueLayerMandateId: string) =>
  `${MANDATES_URL}/${trueLayerMandateId}/revoke`;

export type MandateApi = {
  /** Every request to the mandate API, in order. */
  requests: RecordedRequest[];
  /** The create requests' parsed bodies, in order. */
  created: Array<Record<string, unknown>>;
  /** TrueLayer mandate ids revoked, in order (repeats included). */
  revoked: string[];
  /** While true, TrueLayer answers 503 to everything (the backend retries once). */
  down: boolean;
};

/**
 * Adds TrueLayer's mandate API to the stubbed network: `POST /v3/mandates` creates a mandate
 * awaiting authorisation (ids `tl-mandate-1`, `tl-mandate-2`…; a repeated Idempotency-Key answers
 * the same mandate, as TrueLayer does), `POST /v3/mandates/{id}/revoke` revokes one created here
 * (204; 404 for another id). It chains on the `fetch` stub already installed (`trueLayerNetwork`
 * for the token and JWKS, or `billingWorld`'s), so the other stubs of TrueLayer keep working.
 */
export function stubMandateApi(): MandateApi {
  const api: MandateApi = { requests: [], created: [], revoked: [], down: false };
  const byKey = new Map<string, string>();
  const network = globalThis.fetch;
  const answer = (request: RecordedRequest): Response => {
    if (api.down) return new Response("upstream unavailable", { status: 503 });
    if (request.url === MANDATES_URL && request.method === "POST") {
      const key = request.headers["idempotency-key"];
      let id = byKey.get(key);
      if (id === undefined) {
        id = `tl-mandate-${byKey.size + 1}`;
        byKey.set(key, id);
        api.created.push(JSON.parse(request.body) as Record<string, unknown>);
      }
      return jsonResponse(201, {
        id,
        user: { id: "tl-user" },
        resource_token: `token-${id}`,
        status: "authorization_required",
      });
    }
    const revoke = /\/v3\/mandates\/([^/]+)\/revoke$/.exec(new URL(request.url).pathname);
    if (revoke !== null && request.method === "POST" && [...byKey.values()].includes(revoke[1])) {
      api.revoked.push(revoke[1]);
      return new Response(null, { status: 204 });
    }
    return jsonResponse(404, { title: "Not Found" });
  };
  vi.stubGlobal("fetch", async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    if (!request.url.startsWith(MANDATES_URL)) return await network(input, init);
    const recorded: RecordedRequest = {
      url: request.url,
      method: request.method,
      headers: Object.fromEntries(request.headers.entries()),
      body: await request.text(),
    };
    api.requests.push(recorded);
    return answer(recorded);
  });
  return api;
}

type MandateEventType = "mandate_authorized" | "mandate_failed" | "mandate_revoked";

/** A mandate webhook body as TrueLayer documents it ("Mandate webhooks"). */
export function mandateEvent(
  type: MandateEventType,
  trueLayerMandateId: string,
  eventId: string,
  extra: Record<string, unknown> = {},
) {
  const at = "2026-05-01T10:00:00.000Z";
  return {
    type,
    event_version: 1,
    event_id: eventId,
    mandate_id: trueLayerMandateId,
    ...(type === "mandate_authorized" ? { authorized_at: at } : {}),
    ...(type === "mandate_failed"
      ? { failed_at: at, failure_stage: "authorizing", failure_reason: "authorization_failed" }
      : {}),
    ...(type === "mandate_revoked" ? { revoked_at: at, revocation_source: "user" } : {}),
    ...extra,
  };
}

/** Delivers a signed mandate webhook; returns the HTTP status and the JSON body. */
export async function deliverMandateEvent(
  t: TestConvex,
  webhookKey: EcKey,
  type: MandateEventType,
  trueLayerMandateId: string,
  eventId = `${type}-${trueLayerMandateId}`,
  extra: Record<string, unknown> = {},
) {
  const response = await deliverTrueLayer(
    t,
    webhookKey,
    mandateEvent(type, trueLayerMandateId, eventId, extra),
  );
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** The user authorises the mandate at their bank: TrueLayer's signed `mandate_authorized`. */
export async function authorizeByWebhook(
  t: TestConvex,
  webhookKey: EcKey,
  trueLayerMandateId: string,
) {
  return await deliverMandateEvent(t, webhookKey, "mandate_authorized", trueLayerMandateId);
}
