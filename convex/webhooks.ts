import { v } from "convex/values";
import { Webhook, WebhookVerificationError } from "svix";
import { internal } from "./_generated/api";
import { httpAction } from "./_generated/server";
import { sweepMutation } from "./lib/sweeps";
import {
  asJsonObject,
  errorResponse,
  jsonResponse,
  parseJsonObject,
  readRawBody,
  withJsonErrors,
} from "./lib/http";
import { parseTrueLayerWebhook, trueLayerEnvironment } from "./lib/truelayer";
import { parseMandateWebhook } from "./lib/trueLayerMandates";
import { resendClient } from "./model/notices";
import { pruneWebhookEvents } from "./model/webhookEvents";

/**
 * The HTTP endpoints' handlers (routed in http.ts). Each verifies the provider's signature over
 * the raw body before reading it, and fails closed: until a signature has verified, every path
 * (a missing, bad or unusable secret, a verifier that throws) answers an error and writes
 * nothing. A bad or missing signature is a 401; a configuration that cannot verify anything is a
 * 503 (the provider retries later), logged once per cold start. Answers are JSON: errors as
 * `{ code, message }`, processed deliveries as `{ outcome, message }`.
 */

/** Webhook bodies are small; anything larger is refused before verification. */
const MAX_BODY_BYTES = 256 * 1024;
const MAX_HEADERS = 100;

/** Configuration problems already logged by this instance (logged once per cold start). */
const loggedConfigProblems = new Set<string>();

function unavailable(problem: string): Response {
  if (!loggedConfigProblems.has(problem)) {
    loggedConfigProblems.add(problem);
    console.error(`Webhook endpoint unavailable: ${problem}`);
  }
  return errorResponse("UNAVAILABLE", problem);
}

/** POST /truelayer/webhook: TrueLayer payment, refund and mandate events. */
export const trueLayerWebhook = httpAction((ctx, request) =>
  withJsonErrors(async () => {
    try {
      trueLayerEnvironment();
    } catch {
      return unavailable(
        `TRUELAYER_ENVIRONMENT=${JSON.stringify(process.env.TRUELAYER_ENVIRONMENT)} must be sandbox or production.`,
      );
    }
    const body = await readRawBody(request, MAX_BODY_BYTES);
    if (!request.headers.get("tl-signature")) {
      return errorResponse("UNAUTHENTICATED", "Missing Tl-Signature header.");
    }
    const headers: Array<{ name: string; value: string }> = [];
    request.headers.forEach((value, name) => {
      if (headers.length < MAX_HEADERS) {
        headers.push({ name, value });
      }
    });
    // Verification needs Node's crypto, so it runs in the Node runtime (convex/truelayer.ts).
    const verdict = await ctx.runAction(internal.truelayer.verifyWebhook, {
      path: new URL(request.url).pathname,
      headers,
      body,
    });
    if (!verdict.ok) {
      if ("unavailable" in verdict) {
        return unavailable(`TrueLayer webhook signatures cannot be checked: ${verdict.reason}`);
      }
      console.warn(`TrueLayer webhook rejected: ${verdict.reason}`);
      return errorResponse("UNAUTHENTICATED", "Invalid Tl-Signature.");
    }
    const fields = parseJsonObject(body);
    const mandate = parseMandateWebhook(fields);
    if (mandate !== null) {
      if (!mandate.ok) {
        console.warn(`TrueLayer webhook malformed: ${mandate.message}`);
        return errorResponse("INVALID_ARGUMENT", mandate.message);
      }
      const result = await ctx.runMutation(internal.mandates.applyMandateEvent, mandate.event);
      const line = `TrueLayer ${mandate.event.type} ${mandate.event.eventId}: ${result.outcome}: ${result.message}`;
      if (result.outcome === "applied" || result.outcome === "duplicate") console.log(line);
      else console.warn(line);
      // 200 in every case (unknown mandate, out of order, duplicate), as for payments.
      return jsonResponse(200, result);
    }
    const parsed = parseTrueLayerWebhook(fields);
    if (!parsed.ok) {
      console.warn(`TrueLayer webhook malformed: ${parsed.message}`);
      return errorResponse("INVALID_ARGUMENT", parsed.message);
    }
    if (parsed.event === null) {
      console.log(`TrueLayer webhook ${parsed.type}: not handled, acknowledged.`);
      return jsonResponse(200, {
        outcome: "ignored",
        message: `Event type ${parsed.type} is not handled.`,
      });
    }
    const event = parsed.event;
    if (
      event.refundId !== undefined &&
      event.amountInMinor === undefined &&
      (await ctx.runQuery(internal.payments.refundNeedsAmount, {
        trueLayerPaymentId: event.trueLayerPaymentId,
        cineweavePaymentId: event.cineweavePaymentId,
        trueLayerRefundId: event.refundId,
      }))
    ) {
      // A refund of our payment made in TrueLayer Console: its webhook does not say how much
      // went back. (A payment that is not ours is answered `unknown_payment` below, unasked.)
      const refund = await ctx.runAction(internal.truelayer.getRefund, {
        trueLayerPaymentId: event.trueLayerPaymentId,
        trueLayerRefundId: event.refundId,
      });
      if (!refund.ok && "notFound" in refund) {
        console.warn(`TrueLayer refund ${event.refundId}: ${refund.reason}; ignored.`);
        return jsonResponse(200, {
          outcome: "ignored",
          message: `TrueLayer has no refund ${event.refundId} of this payment.`,
        });
      }
      if (!refund.ok) {
        console.warn(`TrueLayer refund ${event.refundId} amount unknown: ${refund.reason}`);
        return errorResponse("UNAVAILABLE", "The refund's amount could not be read yet.");
      }
      event.amountInMinor = refund.amountInMinor;
    }
    const result = await ctx.runMutation(internal.payments.applyTrueLayerEvent, event);
    const line = `TrueLayer ${parsed.event.type} ${parsed.event.eventId}: ${result.outcome}: ${result.message}`;
    if (result.outcome === "applied" || result.outcome === "duplicate") {
      console.log(line);
    } else {
      // Unknown payment, failure after success, refund for another refund id: worth a look.
      console.warn(line);
    }
    // 200 in every case (unknown payment, failure after success, duplicate): retrying would not
    // change the answer, so TrueLayer should stop.
    return jsonResponse(200, result);
  }),
);

type ClerkEmail = { id?: unknown; email_address?: unknown };

function primaryEmail(data: Record<string, unknown>): string | undefined {
  const emails = Array.isArray(data.email_addresses) ? (data.email_addresses as ClerkEmail[]) : [];
  const primary =
    emails.find((e) => e.id === data.primary_email_address_id) ??
    (data.primary_email_address_id ? undefined : emails[0]);
  return typeof primary?.email_address === "string" ? primary.email_address : undefined;
}

/** Svix signing keys are random bytes; fewer than this many is no secret at all. */
const MIN_SVIX_KEY_BYTES = 16;

/**
 * A Svix verifier for the secret in env var `name` (Clerk's, Resend's), or why it cannot be
 * used. The secret must be exactly what the provider shows: `whsec_` and standard base64 of at
 * least 16 bytes (no spaces, quotes or URL-safe alphabet, which svix would reject or misread).
 */
function svixVerifier(name: string, secret: string | undefined): Webhook | string {
  if (!secret) {
    return `${name} is not set.`;
  }
  const unusable = `${name} is not a usable Svix secret (whsec_ followed by base64).`;
  const key = secret.startsWith("whsec_") ? secret.slice("whsec_".length) : "";
  const bytes =
    /^[A-Za-z0-9+/]+={0,2}$/.test(key) && key.length % 4 === 0
      ? (key.length / 4) * 3 - (key.match(/=+$/)?.[0].length ?? 0)
      : 0;
  if (bytes < MIN_SVIX_KEY_BYTES) {
    return unusable;
  }
  try {
    return new Webhook(secret);
  } catch {
    return unusable;
  }
}

type SvixEvent = { svixId: string; type: string; data: Record<string, unknown>; body: string };

/**
 * A Svix-signed delivery (Clerk's, Resend's) verified and read: the body at most 256 KiB, the
 * HMAC and a timestamp within five minutes (stale or future: refused), then the one parse, which
 * must give a string `type` and a `data` object. Otherwise the error response; nothing written.
 */
async function readSvixEvent(
  provider: string,
  verifier: Webhook,
  request: Request,
): Promise<SvixEvent | Response> {
  const body = await readRawBody(request, MAX_BODY_BYTES);
  const svixHeaders = {
    "svix-id": request.headers.get("svix-id") ?? "",
    "svix-timestamp": request.headers.get("svix-timestamp") ?? "",
    "svix-signature": request.headers.get("svix-signature") ?? "",
  };
  let payload: unknown;
  try {
    payload = verifier.verify(body, svixHeaders);
  } catch (error) {
    if (error instanceof WebhookVerificationError) {
      console.warn(`${provider} webhook rejected: ${error.message}`);
      return errorResponse("UNAUTHENTICATED", `Invalid Svix signature: ${error.message}.`);
    }
    if (!(error instanceof SyntaxError)) {
      // Not a verdict on the signature: the verifier itself failed. Nothing is written.
      console.error(`${provider} webhook verification failed`, error);
      return errorResponse("UNAVAILABLE", "The signature could not be checked.");
    }
    // verify() parses the body only after the signature matched: this one is signed, not JSON.
    return errorResponse("INVALID_ARGUMENT", "The body must be valid JSON.");
  }
  const event = asJsonObject(payload, body) as { type?: unknown; data?: unknown };
  if (typeof event.type !== "string" || typeof event.data !== "object" || event.data === null) {
    return errorResponse("INVALID_ARGUMENT", "Body needs a string `type` and a `data` object.");
  }
  return {
    svixId: svixHeaders["svix-id"],
    type: event.type,
    data: event.data as Record<string, unknown>,
    body,
  };
}

/** POST /clerk/webhook: Clerk user events, signed with Svix (secret CLERK_WEBHOOK_SECRET). */
export const clerkWebhook = httpAction((ctx, request) =>
  withJsonErrors(async () => {
    const verifier = svixVerifier("CLERK_WEBHOOK_SECRET", process.env.CLERK_WEBHOOK_SECRET);
    if (typeof verifier === "string") {
      // 5xx: Clerk keeps retrying until the secret is fixed.
      return unavailable(verifier);
    }
    const event = await readSvixEvent("Clerk", verifier, request);
    if (event instanceof Response) {
      return event;
    }
    if (
      event.type !== "user.created" &&
      event.type !== "user.updated" &&
      event.type !== "user.deleted"
    ) {
      console.log(`Clerk webhook ${event.type}: not handled, acknowledged.`);
      return jsonResponse(200, {
        outcome: "ignored",
        message: `Event type ${event.type} is not handled.`,
      });
    }
    const data = event.data;
    if (typeof data.id !== "string" || data.id.length === 0) {
      return errorResponse("INVALID_ARGUMENT", "`data.id` (the Clerk user id) is missing.");
    }
    const result = await ctx.runMutation(internal.clerk.applyClerkEvent, {
      eventId: event.svixId,
      type: event.type,
      clerkId: data.id,
      email: event.type === "user.deleted" ? undefined : primaryEmail(data),
    });
    console.log(`Clerk ${event.type} ${event.svixId}: ${result.outcome}: ${result.message}`);
    return jsonResponse(200, result);
  }),
);

/**
 * Daily cron: forgets processed event ids older than the retention (model/webhookEvents.ts).
 * One bounded batch per transaction; it schedules itself again while a backlog remains.
 */
export const pruneOldEvents = sweepMutation({
  name: "webhooks:pruneOldEvents",
  returns: v.object({ deleted: v.number(), more: v.boolean() }),
  batch: (ctx, now) => pruneWebhookEvents(ctx, now),
});

/**
 * POST /resend/webhook: Resend's email delivery events, Svix-signed (secret RESEND_WEBHOOK_SECRET).
 * Verified here first (the same answers as Clerk's route), then handed to the Resend component's
 * `handleResendEventWebhook`, which verifies it again before recording it and calls
 * `notices:onEmailEvent`, which moves the notice's delivery status.
 */
export const resendWebhook = httpAction((ctx, request) =>
  withJsonErrors(async () => {
    const verifier = svixVerifier("RESEND_WEBHOOK_SECRET", process.env.RESEND_WEBHOOK_SECRET);
    if (typeof verifier === "string") {
      return unavailable(verifier);
    }
    const event = await readSvixEvent("Resend", verifier, request);
    if (event instanceof Response) {
      return event;
    }
    // Events the component does not know (not about an email's delivery) it logs and ignores.
    // The body was read already: the component gets it again, with the same headers.
    await resendClient(null).handleResendEventWebhook(
      ctx,
      new Request(request.url, { method: "POST", headers: request.headers, body: event.body }),
    );
    return jsonResponse(200, { outcome: "applied", message: `${event.type} recorded.` });
  }),
);
