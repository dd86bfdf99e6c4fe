import type { TestConvex } from "./setup";
import {
  SANDBOX_JKU,
  TOKEN_URL,
  deliverTrueLayer,
  jsonResponse,
  jwksOf,
  stubNetwork,
  type EcKey,
  type RecordedRequest,
} from "./truelayer";

/**
 * TrueLayer's mandate API as tests see it (offline): `POST /v3/mandates` creates a mandate
 * awaiting authorisation, `POST /v3/mandates/{id}/revoke` revokes it; authorisation, failure and
 * revocation at the bank arrive as signed webhooks (`mandateEvent`, `deliverMandateEvent`).
 */

export const MANDATES_URL = "https://api.truelayer-sandbox.com/v3/mandates";
export const revokeMandateUrl = (trueLayerMandateId: string) =>
  `${MANDATES_URL}/${trueLayerMandateId}/revoke`;

export type MandateApi = {
  requests: RecordedRequest[];
  /** The create requests' parsed bodies, in order. */
  created: Array<Record<string, unknown>>;
  /** TrueLayer mandate ids revoked, in order (repeats included). */
  revoked: string[];
  /** While true, TrueLayer answers 503 to everything (the backend retries once). */
  down: boolean;
};

/**
 * Stubs the network as TrueLayer's sandbox with the mandate API: token, JWKS (serving
 * `webhookKey`), create (ids `tl-mandate-1`, `tl-mandate-2`…, one per Idempotency-Key: a
 * repeated key answers the same mandate, as TrueLayer does) and revoke (204) for every id created.
 */
export function stubMandateApi(webhookKey: EcKey): MandateApi {
  const api: MandateApi = { requests: [], created: [], revoked: [], down: false };
  const byKey = new Map<string, string>();
  const routes: Record<string, (request: RecordedRequest) => Response> = {};
  const unavailable = () => new Response("upstream unavailable", { status: 503 });
  routes[MANDATES_URL] = (request) => {
    if (api.down) return unavailable();
    const key = request.headers["idempotency-key"];
    let id = byKey.get(key);
    if (id === undefined) {
      id = `tl-mandate-${byKey.size + 1}`;
      byKey.set(key, id);
      api.created.push(JSON.parse(request.body) as Record<string, unknown>);
      routes[revokeMandateUrl(id)] = () => {
        if (api.down) return unavailable();
        api.revoked.push(id!);
        return new Response(null, { status: 204 });
      };
    }
    return jsonResponse(201, {
      id,
      user: { id: "tl-user" },
      resource_token: `token-${id}`,
      status: "authorization_required",
    });
  };
  routes[SANDBOX_JKU] = () => new Response(jwksOf(webhookKey), { status: 200 });
  routes[TOKEN_URL] = () => jsonResponse(200, { access_token: "access-token", expires_in: 3600 });
  // stubNetwork looks routes up per request: revoke routes added later are served too.
  api.requests = stubNetwork(routes);
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
