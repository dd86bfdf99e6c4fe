import { expect, vi } from "vitest";
import { api, internal } from "../../convex/_generated/api";
import type { Doc, Id } from "../../convex/_generated/dataModel";
import { drainRenewalCreations, setup, signUp, type TestConvex } from "./setup";
import {
  PAYMENTS_URL,
  deliverTrueLayer,
  generateEs512Key,
  jsonResponse,
  stubTrueLayerEnv,
  trueLayerNetwork,
  type EcKey,
  type RecordedRequest,
} from "./truelayer";

/**
 * A deployment with TrueLayer stubbed as its sandbox would be, for money sequences: checkouts
 * and renewals get payment ids `tl-1`, `tl-2`…, refunds `tl-refund-1`…, and every webhook is
 * signed. `trueLayerDown` makes payment and refund creation answer 503 (an outage).
 */
export type Client = Awaited<ReturnType<typeof signUp>>["as"];

export const HOUR = 60 * 60 * 1000;
export const DAY = 24 * HOUR;

const keys: { trueLayer?: EcKey; merchant?: EcKey } = {};

export async function billingWorld(now: number) {
  keys.trueLayer ??= generateEs512Key("tl-billing");
  keys.merchant ??= generateEs512Key("merchant-billing");
  const trueLayerKey = keys.trueLayer;
  vi.useFakeTimers({ now });
  stubTrueLayerEnv(keys.merchant);
  vi.stubEnv("TRUELAYER_RETURN_URI", "https://app.example.com/billing");
  let payments = 0;
  let refunds = 0;
  let events = 0;
  const world = {
    trueLayerDown: false,
    /** GET of a refund: its amount, or the status TrueLayer answers. */
    refundLookup: (_request: RecordedRequest): Response => jsonResponse(404, {}),
  };
  const requests = trueLayerNetwork(trueLayerKey, {
    [PAYMENTS_URL]: () =>
      world.trueLayerDown
        ? jsonResponse(503, { title: "Service Unavailable" })
        : jsonResponse(201, {
            id: `tl-${++payments}`,
            resource_token: "rt",
            status: "authorization_required",
          }),
  });
  // Refund creation and look-ups: any payment's refunds URL.
  const network = globalThis.fetch;
  vi.stubGlobal("fetch", async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    const match = /\/v3\/payments\/([^/]+)\/refunds(\/[^/]+)?$/.exec(new URL(request.url).pathname);
    if (match === null) return await network(input, init);
    const recorded = {
      url: request.url,
      method: request.method,
      headers: Object.fromEntries(request.headers.entries()),
      body: await request.text(),
    };
    requests.push(recorded);
    if (request.method === "GET") return world.refundLookup(recorded);
    if (world.trueLayerDown) return jsonResponse(503, {});
    return jsonResponse(201, { id: `tl-refund-${++refunds}` });
  });
  const t = await setup();

  async function deliver(event: Record<string, unknown>) {
    const response = await deliverTrueLayer(t, trueLayerKey, {
      event_version: 1,
      event_id: `evt-${++events}`,
      ...event,
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }
  const tlIdOf = async (paymentId: Id<"payments">) =>
    (await t.run(async (ctx) => await ctx.db.get("payments", paymentId)))!.trueLayerTxnId;

  return Object.assign(world, {
    t,
    requests,
    async user(clerkId: string) {
      return await signUp(t, clerkId);
    },
    /** A checkout of `planName`; returns our payment id. */
    async checkout(as: Client, planName: string) {
      const result = await as.action(api.payments.createCheckout, { planName });
      return result.paymentId;
    },
    async pay(paymentId: Id<"payments">) {
      const result = await deliver({
        type: "payment_executed",
        payment_id: await tlIdOf(paymentId),
      });
      expect(result.status).toBe(200);
      return result.body;
    },
    async failPayment(paymentId: Id<"payments">) {
      return await deliver({
        type: "payment_failed",
        payment_id: await tlIdOf(paymentId),
        failure_reason: "authorization_failed",
      });
    },
    /** An operator's refund (`amount` minor units, default all); returns TrueLayer's refund id. */
    async refund(paymentId: Id<"payments">, amount?: number) {
      const result = await t.action(internal.payments.refundPayment, { paymentId, amount });
      return result.trueLayerRefundId;
    },
    async refundEvent(
      paymentId: Id<"payments">,
      refundId: string,
      type: "refund_executed" | "refund_failed",
    ) {
      const result = await deliver({
        type,
        payment_id: await tlIdOf(paymentId),
        refund_id: refundId,
        ...(type === "refund_failed" ? { failure_reason: "returned by the bank" } : {}),
      });
      expect(result.status).toBe(200);
      return result.body;
    },
    deliver,
    /** Moves the clock to `time` and runs what is due then (the sweeps behind the scheduler). */
    async at(time: number) {
      vi.setSystemTime(time);
      await t.mutation(internal.credits.expireDueLots, {});
      await t.mutation(internal.subscriptions.sweepDue, {});
      await t.finishAllScheduledFunctions(() => vi.advanceTimersByTime(0));
      await drainRenewalCreations(t);
    },
    /** Spends `credits` (a multiple of 5) in jobs that finish: consumed for good. */
    async spend(as: Client, credits: number) {
      for (let left = credits; left > 0; left -= Math.min(15, left)) {
        const jobId = await as.mutation(api.jobs.createJob, {
          prompt: "spend",
          durationSec: Math.min(15, left),
        });
        await t.mutation(internal.jobs.updateJobStatus, { jobId, status: "running" });
        await t.mutation(internal.jobs.updateJobStatus, {
          jobId,
          status: "done",
          r2Url: "https://videos.example.com/v.mp4",
        });
      }
    },
    async state(userId: Id<"users">) {
      return await t.run(async (ctx) => {
        const subs = await ctx.db
          .query("subscriptions")
          .withIndex("by_userId", (q) => q.eq("userId", userId))
          .collect();
        return {
          user: (await ctx.db.get("users", userId))!,
          sub: subs.at(-1) ?? null,
          subs,
          lots: (await ctx.db.query("creditLots").collect()).filter((l) => l.userId === userId),
          payments: (await ctx.db.query("payments").collect()).filter((p) => p.userId === userId),
        };
      });
    },
    async payment(paymentId: Id<"payments">): Promise<Doc<"payments">> {
      return (await t.run(async (ctx) => await ctx.db.get("payments", paymentId)))!;
    },
  });
}

export type BillingWorld = Awaited<ReturnType<typeof billingWorld>>;

/** Credits in the user's active lots that came from `paymentId` (its lot and what came of it). */
export function creditsFromPayment(lots: Doc<"creditLots">[], paymentId: Id<"payments">) {
  return lots
    .filter((lot) => lot.paymentId === paymentId && lot.status === "active")
    .reduce((total, lot) => total + lot.remaining - lot.held, 0);
}

export type { TestConvex };
