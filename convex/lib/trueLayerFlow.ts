import { internal } from "../_generated/api";
import type { Id } from "../_generated/dataModel";
import type { ActionCtx } from "../_generated/server";
import type { MandateType } from "./trueLayerMandates";

/**
 * The one flow of every call to TrueLayer that creates something (checkouts, renewals,
 * refunds, mandates): our row is recorded first (a mutation), then TrueLayer is called (a "use node"
 * action, signed and idempotent), then TrueLayer's id is attached to the row, or the caller
 * fails the row with the reason. A call that throws is a failure like a refusal.
 */

export type Created<T> = ({ ok: true } & T) | { ok: false; reason: string };

async function attempt<T>(call: () => Promise<Created<T>>): Promise<Created<T>> {
  try {
    return await call();
  } catch (error) {
    return { ok: false, reason: error instanceof Error ? error.message : String(error) };
  }
}

/** Creates our pending payment with TrueLayer and attaches TrueLayer's id to it. */
export async function createTrueLayerPayment(
  ctx: ActionCtx,
  args: {
    paymentId: Id<"payments">;
    planName: string;
    amountInMinor: number;
    currency: string;
    userName: string;
    userEmail: string;
    idempotencyKey: string;
    /** TrueLayer's mandate id: a payment on it (renewals), else one for the hosted page. */
    mandateId?: string;
  },
): Promise<Created<{ trueLayerPaymentId: string; resourceToken: string }>> {
  const created = await attempt(() => ctx.runAction(internal.truelayer.createPayment, args));
  if (created.ok) {
    await ctx.runMutation(internal.payments.attachTrueLayerPayment, {
      paymentId: args.paymentId,
      trueLayerPaymentId: created.trueLayerPaymentId,
      resourceToken: created.resourceToken,
    });
  }
  return created;
}

/** Creates our requested refund with TrueLayer and attaches TrueLayer's id to it. */
export async function createTrueLayerRefund(
  ctx: ActionCtx,
  args: { refundId: Id<"refunds">; trueLayerPaymentId: string; amountInMinor: number },
): Promise<Created<{ refundId: string }>> {
  const created = await attempt(() =>
    ctx.runAction(internal.truelayer.createRefund, {
      trueLayerPaymentId: args.trueLayerPaymentId,
      amountInMinor: args.amountInMinor,
      // One key per refund row: a retried call cannot refund twice.
      idempotencyKey: args.refundId,
    }),
  );
  if (created.ok) {
    await ctx.runMutation(internal.payments.attachRefund, {
      refundId: args.refundId,
      trueLayerRefundId: created.refundId,
    });
  }
  return created;
}

/**
 * Creates our `creating` mandate with TrueLayer and attaches TrueLayer's id and resource token to
 * it. `attached: false`: the mandate ended meanwhile (a concurrent set-up replaced it).
 */
export async function createTrueLayerMandate(
  ctx: ActionCtx,
  args: {
    mandateId: Id<"mandates">;
    type: MandateType;
    maxAmount: number;
    periodicLimit: number;
    currency: string;
    userName: string;
    userEmail: string;
  },
): Promise<Created<{ trueLayerMandateId: string; resourceToken: string; attached: boolean }>> {
  const created = await attempt(() => ctx.runAction(internal.truelayer.createMandate, args));
  if (!created.ok) return created;
  const attached: boolean = await ctx.runMutation(internal.mandates.attachTrueLayerMandate, {
    mandateId: args.mandateId,
    trueLayerMandateId: created.trueLayerMandateId,
    resourceToken: created.resourceToken,
  });
  return { ...created, attached };
}
