import { v, type Infer } from "convex/values";
import { literals } from "convex-helpers/validators";
import { appError } from "./errors";
import { TRUELAYER_HOSTS, type TrueLayerConfig } from "./truelayer";
import { mandateTypeValidator } from "./validators";

/**
 * TrueLayer payment mandates ("bank on file", model/mandates.ts): the mandate type setting, the
 * token scope each type needs, the hosted page link and the mandate webhooks' parsing. Shared by
 * the default runtime and the Node runtime (truelayer.ts); no Node APIs here.
 */

export type MandateType = Infer<typeof mandateTypeValidator>;
const MANDATE_TYPES: readonly MandateType[] = ["sweeping", "commercial", "direct_debit"];

/**
 * `TRUELAYER_MANDATE_TYPE`, the one reading of it: the type of mandate auto-renewal sets up and
 * renewals are charged on; null when it is unset or not a type (auto-renewal is then off, and
 * renewals are paid on TrueLayer's page as before).
 */
export function configuredMandateType(): MandateType | null {
  const raw = process.env.TRUELAYER_MANDATE_TYPE?.trim().toLowerCase() ?? "";
  return (MANDATE_TYPES as readonly string[]).includes(raw) ? (raw as MandateType) : null;
}

/** `configuredMandateType`, or UNAVAILABLE saying why auto-renewal is off. */
export function readMandateType(): MandateType {
  const type = configuredMandateType();
  if (type !== null) return type;
  if (!process.env.TRUELAYER_MANDATE_TYPE?.trim()) {
    throw appError(
      "UNAVAILABLE",
      "Auto-renewal is not offered here: TRUELAYER_MANDATE_TYPE is not set.",
    );
  }
  throw appError(
    "UNAVAILABLE",
    `Auto-renewal is misconfigured: TRUELAYER_MANDATE_TYPE must be one of ${MANDATE_TYPES.join(", ")}.`,
  );
}

/**
 * The client-credentials scope for creating, revoking and paying on a mandate of `type`: VRP
 * mandates need their `recurring_payments:*` scope next to `payments` (TrueLayer, "Create a
 * payment mandate"); Direct Debit ones only `payments`.
 */
export function mandateScope(type: MandateType): string {
  return type === "direct_debit" ? "payments" : `payments recurring_payments:${type}`;
}

/** TrueLayer's hosted page for authorising a created mandate, when there is a return URI. */
export function hostedMandatePageUrl(
  config: TrueLayerConfig,
  returnUri: string | null,
  trueLayerMandateId: string,
  resourceToken: string,
): string | null {
  if (returnUri === null) {
    return null;
  }
  const fragment = new URLSearchParams({
    mandate_id: trueLayerMandateId,
    resource_token: resourceToken,
    return_uri: returnUri,
  });
  return `${TRUELAYER_HOSTS[config.environment].hostedPaymentPage}/mandates#${fragment.toString()}`;
}

const MAX_RETURN_URI_LENGTH = 2048;

/**
 * A caller's `returnUri`: an absolute https URL (http only for localhost, for development) of at
 * most 2048 characters, else INVALID_ARGUMENT. TrueLayer also only returns to URIs allow-listed
 * in Console.
 */
export function checkReturnUri(returnUri: string): string {
  let url: URL | null = null;
  if (returnUri.length <= MAX_RETURN_URI_LENGTH) {
    try {
      url = new URL(returnUri);
    } catch {
      url = null;
    }
  }
  const local = url !== null && ["localhost", "127.0.0.1"].includes(url.hostname);
  if (url === null || !(url.protocol === "https:" || (url.protocol === "http:" && local))) {
    throw appError(
      "INVALID_ARGUMENT",
      "returnUri must be an absolute https URL (http only for localhost), at most 2048 characters.",
    );
  }
  return returnUri;
}

// ---------------------------------------------------------------------------------------------
// Webhooks

/** The mandate webhook events TrueLayer documents ("Mandate webhooks"); all are acted on. */
export const MANDATE_EVENTS = ["mandate_authorized", "mandate_failed", "mandate_revoked"] as const;

/** A verified mandate webhook event as the backend applies it (`mandates:applyMandateEvent`). */
export const mandateEventValidator = v.object({
  eventId: v.string(),
  type: literals(...MANDATE_EVENTS),
  trueLayerMandateId: v.string(),
  /** Our mandate id, echoed back from the metadata sent at creation (when TrueLayer includes it). */
  cineweaveMandateId: v.optional(v.string()),
  /** failure_reason (failed) or revocation_source (revoked). */
  reason: v.optional(v.string()),
  /** authorized_at / failed_at / revoked_at, in ms. */
  occurredAt: v.optional(v.number()),
});
export type MandateEvent = Infer<typeof mandateEventValidator>;

const MAX_FIELD_LENGTH = 200;

const stringField = (fields: Record<string, unknown>, name: string) => {
  const value = fields[name];
  return typeof value === "string" && value.length > 0 && value.length <= MAX_FIELD_LENGTH
    ? value
    : undefined;
};

/**
 * Reads a verified webhook body if it is a mandate event: null for any other type (the payment
 * events' parser takes it), `ok: false` for a malformed mandate event (400).
 */
export function parseMandateWebhook(
  fields: Record<string, unknown>,
): { ok: true; event: MandateEvent } | { ok: false; message: string } | null {
  const type = fields.type;
  if (typeof type !== "string" || !(MANDATE_EVENTS as readonly string[]).includes(type)) {
    return null;
  }
  const eventId = stringField(fields, "event_id");
  const trueLayerMandateId = stringField(fields, "mandate_id");
  if (eventId === undefined || trueLayerMandateId === undefined) {
    return { ok: false, message: `${type} needs a string \`event_id\` and \`mandate_id\`.` };
  }
  const event: MandateEvent = {
    eventId,
    type: type as MandateEvent["type"],
    trueLayerMandateId,
  };
  const metadata = fields.metadata;
  if (typeof metadata === "object" && metadata !== null) {
    const ours = stringField(metadata as Record<string, unknown>, "cineweave_mandate_id");
    if (ours !== undefined) event.cineweaveMandateId = ours;
  }
  const reason =
    type === "mandate_failed"
      ? (stringField(fields, "failure_reason") ?? "unknown")
      : type === "mandate_revoked"
        ? (stringField(fields, "revocation_source") ?? "unknown")
        : undefined;
  if (reason !== undefined) event.reason = reason;
  const at = fields[type.replace("mandate_", "") + "_at"];
  const ms = typeof at === "string" ? Date.parse(at) : NaN;
  if (Number.isFinite(ms)) event.occurredAt = ms;
  return { ok: true, event };
}
