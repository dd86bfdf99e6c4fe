import { v, type Infer } from "convex/values";
import { literals } from "convex-helpers/validators";
import { appError } from "./errors";

/**
 * TrueLayer configuration and webhook parsing shared by the default runtime (payments.ts,
 * webhooks.ts) and the Node runtime (truelayer.ts). No Node APIs here.
 */

export type TrueLayerEnvironment = "sandbox" | "production";

export const TRUELAYER_HOSTS: Record<
  TrueLayerEnvironment,
  { auth: string; api: string; hostedPaymentPage: string; jku: string }
> = {
  sandbox: {
    auth: "https://auth.truelayer-sandbox.com",
    api: "https://api.truelayer-sandbox.com",
    hostedPaymentPage: "https://payment.truelayer-sandbox.com",
    jku: "https://webhooks.truelayer-sandbox.com/.well-known/jwks",
  },
  production: {
    auth: "https://auth.truelayer.com",
    api: "https://api.truelayer.com",
    hostedPaymentPage: "https://payment.truelayer.com",
    jku: "https://webhooks.truelayer.com/.well-known/jwks",
  },
};

/** Currencies TrueLayer's Payments API v3 accepts. */
export const TRUELAYER_CURRENCIES = ["GBP", "EUR"] as const;

export type TrueLayerConfig = {
  environment: TrueLayerEnvironment;
  clientId: string;
  clientSecret: string;
  signingKeyId: string;
  signingPrivateKeyPem: string;
  merchantAccountId: string;
  currency: string;
  /** Where TrueLayer's hosted payment page sends the user back; optional. */
  returnUri: string | null;
};

/** `TRUELAYER_ENVIRONMENT`: "sandbox" (the default) or "production". */
export function trueLayerEnvironment(): TrueLayerEnvironment {
  const raw = (process.env.TRUELAYER_ENVIRONMENT ?? "sandbox").trim().toLowerCase();
  if (raw !== "sandbox" && raw !== "production") {
    throw appError(
      "UNAVAILABLE",
      `Payments are misconfigured: TRUELAYER_ENVIRONMENT must be "sandbox" or "production", not "${raw}".`,
    );
  }
  return raw;
}

const REQUIRED_VARIABLES = [
  "TRUELAYER_CLIENT_ID",
  "TRUELAYER_CLIENT_SECRET",
  "TRUELAYER_SIGNING_KEY_ID",
  "TRUELAYER_SIGNING_PRIVATE_KEY",
  "TRUELAYER_MERCHANT_ACCOUNT_ID",
] as const;

/**
 * The TrueLayer settings from the deployment's env vars. A missing or invalid variable is a
 * ConvexError naming it (code UNAVAILABLE: payments cannot start here), never
 * a crash. Secrets stay inside the functions that read them: never pass them as arguments.
 */
/** `TRUELAYER_CURRENCY` as payments are charged in (default GBP; checked by readTrueLayerConfig). */
export function trueLayerCurrency(): string {
  return (process.env.TRUELAYER_CURRENCY ?? "GBP").trim().toUpperCase();
}

export function readTrueLayerConfig(): TrueLayerConfig {
  const missing = REQUIRED_VARIABLES.filter((name) => !process.env[name]?.trim());
  if (missing.length > 0) {
    throw appError(
      "UNAVAILABLE",
      `Payments are not configured: set ${missing.join(", ")} (npx convex env set NAME value).`,
    );
  }
  const currency = trueLayerCurrency();
  if (!(TRUELAYER_CURRENCIES as readonly string[]).includes(currency)) {
    throw appError(
      "UNAVAILABLE",
      `Payments are misconfigured: TRUELAYER_CURRENCY must be one of ${TRUELAYER_CURRENCIES.join(", ")}.`,
    );
  }
  return {
    environment: trueLayerEnvironment(),
    clientId: process.env.TRUELAYER_CLIENT_ID!.trim(),
    clientSecret: process.env.TRUELAYER_CLIENT_SECRET!.trim(),
    signingKeyId: process.env.TRUELAYER_SIGNING_KEY_ID!.trim(),
    // Env values often carry the PEM on one line with literal "\n" escapes.
    signingPrivateKeyPem: process.env.TRUELAYER_SIGNING_PRIVATE_KEY!.replace(/\\n/g, "\n").trim(),
    merchantAccountId: process.env.TRUELAYER_MERCHANT_ACCOUNT_ID!.trim(),
    currency,
    returnUri: process.env.TRUELAYER_RETURN_URI?.trim() || null,
  };
}

/** The hosted payment page URL for a created payment, when a return URI is configured. */
export function hostedPaymentPageUrl(
  config: TrueLayerConfig,
  trueLayerPaymentId: string,
  resourceToken: string,
): string | null {
  if (config.returnUri === null) {
    return null;
  }
  const fragment = new URLSearchParams({
    payment_id: trueLayerPaymentId,
    resource_token: resourceToken,
    return_uri: config.returnUri,
  });
  return `${TRUELAYER_HOSTS[config.environment].hostedPaymentPage}/payments#${fragment.toString()}`;
}

/** The webhook events the backend acts on; every other type is acknowledged and ignored. */
export const HANDLED_TRUELAYER_EVENTS = [
  "payment_executed",
  "payment_settled",
  "payment_failed",
  "refund_executed",
  "refund_failed",
] as const;
export type TrueLayerEventType = (typeof HANDLED_TRUELAYER_EVENTS)[number];

/** A verified webhook event as the backend applies it (`payments:applyTrueLayerEvent`). */
export const trueLayerEventValidator = v.object({
  eventId: v.string(),
  type: literals(...HANDLED_TRUELAYER_EVENTS),
  /** TrueLayer's payment id (`payments.trueLayerTxnId`). */
  trueLayerPaymentId: v.string(),
  /** Our payment id, echoed back from the metadata sent at checkout. */
  cineweavePaymentId: v.optional(v.string()),
  /** TrueLayer's refund id (refund events). */
  refundId: v.optional(v.string()),
  /** The refund's amount (refund events): from the body, else from TrueLayer's refund resource. */
  amountInMinor: v.optional(v.number()),
  failureReason: v.optional(v.string()),
  /** executed_at / settled_at / failed_at, in ms. */
  occurredAt: v.optional(v.number()),
});
export type TrueLayerEvent = Infer<typeof trueLayerEventValidator>;

export type ParsedTrueLayerWebhook =
  | { ok: true; event: TrueLayerEvent }
  | { ok: true; event: null; type: string }
  | { ok: false; message: string };

const MAX_ID_LENGTH = 200;

function idField(body: Record<string, unknown>, name: string): string | undefined {
  const value = body[name];
  return typeof value === "string" && value.length > 0 && value.length <= MAX_ID_LENGTH
    ? value
    : undefined;
}

function timeField(body: Record<string, unknown>, name: string): number | undefined {
  const value = body[name];
  if (typeof value !== "string") {
    return undefined;
  }
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : undefined;
}

/**
 * Reads a (verified, already parsed) TrueLayer webhook body; `ok: false` means a malformed body
 * (400).
 */
export function parseTrueLayerWebhook(fields: Record<string, unknown>): ParsedTrueLayerWebhook {
  const type = fields.type;
  const eventId = idField(fields, "event_id");
  if (typeof type !== "string" || eventId === undefined) {
    return { ok: false, message: "Body needs a string `type` and `event_id`." };
  }
  if (!(HANDLED_TRUELAYER_EVENTS as readonly string[]).includes(type)) {
    return { ok: true, event: null, type };
  }
  const eventType = type as TrueLayerEventType;
  const trueLayerPaymentId = idField(fields, "payment_id");
  if (trueLayerPaymentId === undefined) {
    return { ok: false, message: `${type} needs a \`payment_id\`.` };
  }
  const event: TrueLayerEvent = { eventId, type: eventType, trueLayerPaymentId };
  const metadata = fields.metadata;
  if (typeof metadata === "object" && metadata !== null) {
    const ours = idField(metadata as Record<string, unknown>, "cineweave_payment_id");
    if (ours !== undefined) {
      event.cineweavePaymentId = ours;
    }
  }
  if (eventType === "refund_executed" || eventType === "refund_failed") {
    const refundId = idField(fields, "refund_id");
    if (refundId === undefined) {
      return { ok: false, message: `${type} needs a \`refund_id\`.` };
    }
    event.refundId = refundId;
    const amount = fields.amount_in_minor;
    if (typeof amount === "number" && Number.isSafeInteger(amount) && amount > 0) {
      event.amountInMinor = amount;
    }
  }
  if (eventType === "payment_failed" || eventType === "refund_failed") {
    const reason = fields.failure_reason;
    event.failureReason =
      typeof reason === "string" && reason.length > 0 ? reason.slice(0, 500) : "unknown";
  }
  const occurredAt =
    timeField(fields, "executed_at") ??
    timeField(fields, "settled_at") ??
    timeField(fields, "failed_at");
  if (occurredAt !== undefined) {
    event.occurredAt = occurredAt;
  }
  return { ok: true, event };
}
