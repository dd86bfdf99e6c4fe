import { vi } from "vitest";
import type { Doc, Id } from "../../convex/_generated/dataModel";
import { billingWorld } from "./billing";
import { PAYMENTS_URL, jsonResponse } from "./truelayer";

/**
 * A billing world (support/billing.ts) whose TrueLayer also takes payments on mandates, as its
 * sandbox would: a POST /v3/payments with `payment_method.type === "mandate"` is answered by
 * idempotency key (the same key gets the same payment back, as TrueLayer does, so a retried
 * call never charges twice), recorded in `charges`, and `mandateDown` makes it answer 503.
 * Mandates are inserted authorised (`authorizeMandate`) until the mandate lifecycle is merged.
 */
export type MandateCharge = {
  idempotencyKey: string;
  trueLayerPaymentId: string;
  mandateId: string;
  amount: number;
  cineweavePaymentId: string;
};

export const MANDATE_TYPE = "commercial";

export async function mandateWorld(now: number, mandateType = MANDATE_TYPE) {
  vi.stubEnv("TRUELAYER_MANDATE_TYPE", mandateType);
  const w = await billingWorld(now);
  const byKey = new Map<string, MandateCharge>();
  /** Every call TrueLayer received, retried ones included. */
  const calls: MandateCharge[] = [];
  /** `failNext`: that many more calls answer 503 (their keys go to `failedKeys`). */
  const state = {
    mandateDown: false,
    failNext: 0,
    failedKeys: [] as string[],
    calls,
    charges: [] as MandateCharge[],
  };
  const network = globalThis.fetch;
  // The world returned below: tests flip its `mandateDown` and `failNext`.
  let control = state;
  vi.stubGlobal("fetch", async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    if (request.url !== PAYMENTS_URL || request.method !== "POST") {
      return await network(input, init);
    }
    const text = await request.clone().text();
    const body = JSON.parse(text) as {
      amount_in_minor: number;
      payment_method: { type: string; mandate_id?: string };
      metadata: { cineweave_payment_id: string };
    };
    if (body.payment_method.type !== "mandate") {
      return await network(input, init);
    }
    const idempotencyKey = request.headers.get("Idempotency-Key") ?? "";
    if (control.mandateDown || control.failNext > 0) {
      control.failNext = Math.max(0, control.failNext - 1);
      state.failedKeys.push(idempotencyKey);
      return jsonResponse(503, { title: "Service Unavailable" });
    }
    let charge = byKey.get(idempotencyKey);
    if (charge === undefined) {
      charge = {
        idempotencyKey,
        trueLayerPaymentId: `tl-mandate-${byKey.size + 1}`,
        mandateId: body.payment_method.mandate_id ?? "",
        amount: body.amount_in_minor,
        cineweavePaymentId: body.metadata.cineweave_payment_id,
      };
      byKey.set(idempotencyKey, charge);
      state.charges.push(charge);
    }
    calls.push(charge);
    return jsonResponse(201, {
      id: charge.trueLayerPaymentId,
      user: { id: "tl-user" },
      status: "authorized",
    });
  });

  const world = Object.assign(w, state, {
    /** An authorised mandate for the user (what the mandate lifecycle's webhook leaves). */
    async authorizeMandate(
      userId: Id<"users">,
      limits: { maxAmount?: number; periodicLimit?: number } = {},
    ): Promise<Id<"mandates">> {
      return await w.t.run(
        async (ctx) =>
          await ctx.db.insert("mandates", {
            userId,
            trueLayerMandateId: `tl-mandate-of-${userId}-${Date.now()}`,
            type: mandateType === "direct_debit" ? "direct_debit" : "commercial",
            status: "authorized",
            currency: "GBP",
            maxAmount: limits.maxAmount ?? 6000,
            periodicLimit: limits.periodicLimit ?? 6000,
            createdAt: Date.now(),
            authorizedAt: Date.now(),
          }),
      );
    },
    /** The user revoked it at their bank (what the mandate lifecycle's webhook leaves). */
    async revokeMandate(mandateId: Id<"mandates">) {
      await w.t.run(async (ctx) => {
        await ctx.db.patch("mandates", mandateId, { status: "revoked", endedAt: Date.now() });
      });
    },
    /** The payer's bank refused the charge (payment_failed). */
    async refuse(paymentId: Id<"payments">) {
      const payment = await w.payment(paymentId);
      return await w.deliver({
        type: "payment_failed",
        payment_id: payment.trueLayerTxnId,
        failure_reason: "insufficient_funds",
      });
    },
    /** The user's renewal payments, oldest first. */
    async renewals(userId: Id<"users">): Promise<Doc<"payments">[]> {
      const { payments } = await w.state(userId);
      return payments.filter((p) => p.purpose === "renewal");
    },
  });
  control = world;
  return world;
}

export type MandateWorld = Awaited<ReturnType<typeof mandateWorld>>;
