import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import { creditsForRefund, reverseVoid, voidPaymentLots } from "./refundCredits";
import { reinstateRenewalAfterReversal } from "./subscriptionRenewals";

/**
 * Refunds of credited payments. Each TrueLayer refund is a `refunds` row of its own (ours,
 * requested through `payments:refundPayment`, or one made in TrueLayer Console and first seen
 * in a webhook), with its status, amount and the credits it moved. Every event acts on its own
 * row only, so no stale event can take over another attempt, and a row changes state at most
 * once in each direction:
 *
 *   requested ──(TrueLayer answers)──> pending ──(refund_executed)──> executed
 *       │                                 │                              │
 *       └──(refused)──> failed <──(refund_failed)────────────────────────┘
 *
 * `failed` is final (a refund_executed delivered after it is ignored). An executed refund that
 * fails (a bank returned it) gives back exactly the credits it took (`refund_reversal`).
 *
 * Credits: an executed refund takes back its share of the payment's credits, in proportion to
 * its amount and rounded down, counted cumulatively so partial refunds that add up to the whole
 * payment take back exactly all of it, from the payment's lots (`voidPaymentLots`: its own lot
 * and every lot that came out of it, model/paymentCredits.ts): unheld
 * credits are voided at once; credits held by unfinished jobs are not spent, so they are marked
 * and voided when their jobs release them (`pendingCredits` until then); what was consumed (or
 * expired) is outstanding, for operators (`payments:listOutstandingRefunds`). The payment's
 * refund summary is recomputed from its rows whenever one changes (`refreshRefundSummary`).
 */

/** Refunds of one payment we read at most; operators cannot request more than this many. */
export const MAX_REFUNDS_PER_PAYMENT = 20;
const FAILURE_REASON_MAX_LENGTH = 500;

export type RefundOutcome = {
  outcome: "applied" | "ignored";
  message: string;
};

export function isSucceeded(payment: Doc<"payments">): boolean {
  return payment.status === "executed" || payment.status === "settled";
}

export async function refundsOfPayment(
  ctx: QueryCtx,
  paymentId: Id<"payments">,
): Promise<Doc<"refunds">[]> {
  return await ctx.db
    .query("refunds")
    .withIndex("by_paymentId", (q) => q.eq("paymentId", paymentId))
    .take(MAX_REFUNDS_PER_PAYMENT * 5);
}

export async function findRefundByTrueLayerId(
  ctx: QueryCtx,
  trueLayerRefundId: string,
): Promise<Doc<"refunds"> | null> {
  return await ctx.db
    .query("refunds")
    .withIndex("by_trueLayerRefundId", (q) => q.eq("trueLayerRefundId", trueLayerRefundId))
    .first();
}

/** The payment's summary fields, derived from its refund rows. */
export async function refreshRefundSummary(
  ctx: MutationCtx,
  paymentId: Id<"payments">,
): Promise<void> {
  const rows = await refundsOfPayment(ctx, paymentId);
  const executed = rows.filter((row) => row.status === "executed");
  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
  const refundStatus = rows.some((r) => r.status === "requested" || r.status === "pending")
    ? ("pending" as const)
    : executed.length > 0
      ? ("executed" as const)
      : rows.length > 0
        ? ("failed" as const)
        : undefined;
  await ctx.db.patch("payments", paymentId, {
    refundStatus,
    refundedAmount: rows.length > 0 ? sum(executed.map((r) => r.amount)) : undefined,
    creditsReclaimed: rows.length > 0 ? sum(executed.map((r) => r.creditsReclaimed)) : undefined,
    outstandingCredits:
      rows.length > 0 ? sum(executed.map((r) => r.outstandingCredits)) : undefined,
  });
}

// ---------------------------------------------------------------------------------------------
// Requests (operators, `payments:refundPayment`)

/**
 * Records a `requested` refund of `amount` minor units (default: all that is not refunded or
 * being refunded yet) before TrueLayer is asked, so the amount in flight is counted at once.
 */
export async function requestRefund(
  ctx: MutationCtx,
  paymentId: Id<"payments">,
  amount: number | undefined,
) {
  const payment = await ctx.db.get("payments", paymentId);
  if (payment === null) {
    throw appError("NOT_FOUND", "Payment not found.");
  }
  if (!isSucceeded(payment) || payment.trueLayerTxnId === "") {
    throw appError(
      "INVALID_TRANSITION",
      `Only an executed or settled payment can be refunded (this one is ${payment.status}).`,
    );
  }
  const rows = await refundsOfPayment(ctx, paymentId);
  if (rows.length >= MAX_REFUNDS_PER_PAYMENT) {
    throw appError("INVALID_TRANSITION", "This payment has too many refunds already.");
  }
  const committed = rows
    .filter((row) => row.status !== "failed")
    .reduce((total, row) => total + row.amount, 0);
  const refundable = payment.amount - committed;
  if (refundable <= 0) {
    throw appError(
      "INVALID_TRANSITION",
      "This payment is already refunded in full (or its refunds are in progress).",
    );
  }
  const requested = amount ?? refundable;
  if (!Number.isSafeInteger(requested) || requested <= 0 || requested > refundable) {
    throw appError(
      "INVALID_ARGUMENT",
      `amount must be a whole number of minor units from 1 to ${refundable}.`,
    );
  }
  const refundId = await ctx.db.insert("refunds", {
    paymentId,
    userId: payment.userId,
    status: "requested",
    amount: requested,
    origin: "operator",
    creditsReclaimed: 0,
    outstandingCredits: 0,
    createdAt: Date.now(),
  });
  await refreshRefundSummary(ctx, paymentId);
  return {
    refundId,
    trueLayerPaymentId: payment.trueLayerTxnId,
    amount: requested,
    currency: payment.currency,
  };
}

/**
 * Stores TrueLayer's id on our requested refund. If a webhook for that id arrived first, it
 * made a row of its own: that row is the refund, and ours (which never moved credits) goes.
 */
export async function attachTrueLayerRefund(
  ctx: MutationCtx,
  refundId: Id<"refunds">,
  trueLayerRefundId: string,
): Promise<void> {
  const refund = await ctx.db.get("refunds", refundId);
  if (refund === null || refund.trueLayerRefundId === trueLayerRefundId) {
    return;
  }
  const seen = await findRefundByTrueLayerId(ctx, trueLayerRefundId);
  if (seen !== null) {
    if (refund.status === "requested") {
      await ctx.db.delete("refunds", refundId);
    }
    await ctx.db.patch("refunds", seen._id, { origin: "operator" });
  } else if (refund.trueLayerRefundId === undefined) {
    await ctx.db.patch("refunds", refundId, {
      trueLayerRefundId,
      status: refund.status === "requested" ? "pending" : refund.status,
    });
  } else {
    throw appError("CONFLICT", "This refund is already linked to another TrueLayer refund.");
  }
  await refreshRefundSummary(ctx, refund.paymentId);
}

/** TrueLayer refused (or could not be asked): the request failed and nothing was refunded. */
export async function failRefundRequest(
  ctx: MutationCtx,
  refundId: Id<"refunds">,
  reason: string,
): Promise<void> {
  const refund = await ctx.db.get("refunds", refundId);
  if (refund?.status === "requested") {
    await ctx.db.patch("refunds", refundId, {
      status: "failed",
      failureReason: reason.slice(0, FAILURE_REASON_MAX_LENGTH),
      failedAt: Date.now(),
    });
    await refreshRefundSummary(ctx, refund.paymentId);
  }
}

// ---------------------------------------------------------------------------------------------
// Webhook events

export type RefundEvent = {
  type: "refund_executed" | "refund_failed";
  trueLayerRefundId: string;
  /** From the webhook body or TrueLayer's refund resource; needed for a refund we do not know. */
  amountInMinor?: number;
  failureReason?: string;
  occurredAt?: number;
};

/** The row the event is about: ours, or a new one for a refund first seen here (Console). */
async function refundRowForEvent(
  ctx: MutationCtx,
  payment: Doc<"payments">,
  event: RefundEvent,
): Promise<Doc<"refunds"> | null> {
  const known = await findRefundByTrueLayerId(ctx, event.trueLayerRefundId);
  if (known !== null) {
    return known.paymentId === payment._id ? known : null;
  }
  const amount = event.amountInMinor;
  if (amount === undefined || !Number.isSafeInteger(amount) || amount <= 0) {
    throw appError("INVALID_ARGUMENT", "The refund's amount is unknown.");
  }
  const refundId = await ctx.db.insert("refunds", {
    paymentId: payment._id,
    userId: payment.userId,
    trueLayerRefundId: event.trueLayerRefundId,
    status: "pending",
    amount,
    origin: "console",
    creditsReclaimed: 0,
    outstandingCredits: 0,
    createdAt: Date.now(),
  });
  return (await ctx.db.get("refunds", refundId))!;
}

/** Applies a verified refund_executed or refund_failed event of `payment`, exactly once. */
export async function applyRefundEvent(
  ctx: MutationCtx,
  payment: Doc<"payments">,
  event: RefundEvent,
): Promise<RefundOutcome> {
  const refund = await refundRowForEvent(ctx, payment, event);
  if (refund === null) {
    return {
      outcome: "ignored",
      message: `Refund ${event.trueLayerRefundId} belongs to another payment.`,
    };
  }
  const wasExecuted = refund.status === "executed";
  const outcome =
    event.type === "refund_executed"
      ? await executeRefund(ctx, payment, refund, event.occurredAt)
      : await failRefund(ctx, refund, event.failureReason ?? "unknown", event.occurredAt);
  await refreshRefundSummary(ctx, payment._id);
  if (event.type === "refund_failed" && wasExecuted) {
    // A renewal awaiting its period took the refund from that period: with the summary back,
    // the period grants it again (nothing else to give back).
    await reinstateRenewalAfterReversal(ctx, payment._id);
  }
  return outcome;
}

async function executeRefund(
  ctx: MutationCtx,
  payment: Doc<"payments">,
  refund: Doc<"refunds">,
  occurredAt: number | undefined,
): Promise<RefundOutcome> {
  const name = refund.trueLayerRefundId ?? refund._id;
  if (refund.status === "executed") {
    return { outcome: "ignored", message: `Refund ${name} was already applied.` };
  }
  if (refund.status === "failed") {
    // Failed is final: TrueLayer fails a refund after (never before) executing it, so this
    // executed event is older news than the failure we already have.
    return { outcome: "ignored", message: `Refund ${name} already failed.` };
  }
  if (!isSucceeded(payment)) {
    return {
      outcome: "ignored",
      message: `Refund of a ${payment.status} payment: nothing was credited.`,
    };
  }
  const earlier = (await refundsOfPayment(ctx, payment._id))
    .filter((row) => row.status === "executed")
    .reduce((total, row) => total + row.amount, 0);
  const due = creditsForRefund(payment, earlier, refund.amount);
  const { reclaimed, pending, outstanding } = await voidPaymentLots(ctx, payment, refund, due);
  await ctx.db.patch("refunds", refund._id, {
    status: "executed",
    creditsDue: due,
    creditsReclaimed: reclaimed,
    pendingCredits: pending || undefined,
    outstandingCredits: outstanding,
    executedAt: occurredAt ?? Date.now(),
  });
  if (outstanding > 0) {
    console.warn(
      `Refund ${name} of payment ${payment._id}: ${outstanding} credits already spent or expired.`,
    );
  }
  return {
    outcome: "applied",
    message: `Refund executed: ${reclaimed} credits reclaimed, ${pending} held (voided as their jobs release them), ${outstanding} outstanding.`,
  };
}

async function failRefund(
  ctx: MutationCtx,
  refund: Doc<"refunds">,
  reason: string,
  occurredAt: number | undefined,
): Promise<RefundOutcome> {
  const name = refund.trueLayerRefundId ?? refund._id;
  if (refund.status === "failed") {
    return { outcome: "ignored", message: `Refund ${name} already failed.` };
  }
  if (refund.status === "executed") {
    // The money came back to us: the customer keeps the credits the refund took.
    await reverseVoid(ctx, refund, `Refund ${name} failed after executing (${reason})`);
  }
  await ctx.db.patch("refunds", refund._id, {
    status: "failed",
    failureReason: reason.slice(0, FAILURE_REASON_MAX_LENGTH),
    failedAt: occurredAt ?? Date.now(),
    creditsReclaimed: 0,
    pendingCredits: undefined,
    outstandingCredits: 0,
  });
  return { outcome: "applied", message: `Refund ${name} failed: ${reason}.` };
}
