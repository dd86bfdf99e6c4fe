import { Webhook, WebhookVerificationError } from "svix";
import { internal } from "./_generated/api";
import { httpAction } from "./_generated/server";
import {
  errorResponse,
  jsonResponse,
  parseJsonObject,
  readRawBody,
  withJsonErrors,
} from "./lib/http";
import { parseTrueLayerWebhook } from "./lib/truelayer";

/**
 * The HTTP endpoints' handlers (routed in http.ts). Each verifies the provider's signature over
 * the raw body before reading it; a bad or missing signature is a 401 and writes nothing.
 * Answers are JSON: errors as `{ code, message }`, processed deliveries as `{ outcome, message }`.
 */

/** Webhook bodies are small; anything larger is refused before verification. */
const MAX_BODY_BYTES = 256 * 1024;
const MAX_HEADERS = 100;

/** POST /truelayer/webhook: TrueLayer payment and refund events. */
export const trueLayerWebhook = httpAction((ctx, request) =>
  withJsonErrors(async () => {
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
      console.warn(`TrueLayer webhook rejected: ${verdict.reason}`);
      return errorResponse("UNAUTHENTICATED", "Invalid Tl-Signature.");
    }
    parseJsonObject(body); // strict: an object, no duplicated keys (400 otherwise)
    const parsed = parseTrueLayerWebhook(body);
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
    const result = await ctx.runMutation(internal.payments.applyTrueLayerEvent, parsed.event);
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

/** POST /clerk/webhook: Clerk user events, signed with Svix (secret CLERK_WEBHOOK_SECRET). */
export const clerkWebhook = httpAction((ctx, request) =>
  withJsonErrors(async () => {
    const secret = process.env.CLERK_WEBHOOK_SECRET;
    if (!secret) {
      console.error("Clerk webhook received but CLERK_WEBHOOK_SECRET is not set.");
      // 5xx: Clerk keeps retrying until the secret is configured.
      return errorResponse("UNAVAILABLE", "CLERK_WEBHOOK_SECRET is not set.");
    }
    const body = await readRawBody(request, MAX_BODY_BYTES);
    const svixHeaders = {
      "svix-id": request.headers.get("svix-id") ?? "",
      "svix-timestamp": request.headers.get("svix-timestamp") ?? "",
      "svix-signature": request.headers.get("svix-signature") ?? "",
    };
    try {
      // Checks the HMAC and that the timestamp is within five minutes (stale or future: refused).
      new Webhook(secret).verify(body, svixHeaders);
    } catch (error) {
      // verify() also parses the body: a correctly signed body that is not JSON is a 400 below.
      if (error instanceof WebhookVerificationError) {
        console.warn(`Clerk webhook rejected: ${error.message}`);
        return errorResponse("UNAUTHENTICATED", `Invalid Svix signature: ${error.message}.`);
      }
    }
    const event = parseJsonObject(body) as { type?: unknown; data?: unknown };
    if (typeof event.type !== "string" || typeof event.data !== "object" || event.data === null) {
      return errorResponse("INVALID_ARGUMENT", "Body needs a string `type` and a `data` object.");
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
    const data = event.data as Record<string, unknown>;
    if (typeof data.id !== "string" || data.id.length === 0) {
      return errorResponse("INVALID_ARGUMENT", "`data.id` (the Clerk user id) is missing.");
    }
    const result = await ctx.runMutation(internal.clerk.applyClerkEvent, {
      eventId: svixHeaders["svix-id"],
      type: event.type,
      clerkId: data.id,
      email: event.type === "user.deleted" ? undefined : primaryEmail(data),
    });
    console.log(
      `Clerk ${event.type} ${svixHeaders["svix-id"]}: ${result.outcome}: ${result.message}`,
    );
    return jsonResponse(200, result);
  }),
);
