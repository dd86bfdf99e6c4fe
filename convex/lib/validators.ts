import { v, type Infer } from "convex/values";
import { literals } from "convex-helpers/validators";

export const planNameValidator = literals("starter", "creator", "studio");
export type PlanName = Infer<typeof planNameValidator>;

export const jobStatusValidator = literals(
  "queued",
  "running",
  "done",
  "failed",
  "canceled",
  "expired",
);
export type JobStatus = Infer<typeof jobStatusValidator>;

/** held: reserved and not final; settled: charged for good; refunded: given back. */
export const creditStatusValidator = literals("held", "settled", "refunded");
export type CreditStatus = Infer<typeof creditStatusValidator>;

/**
 * grant: sign-up credits. purchase: a paid plan. adjustment: an operator's correction.
 * plan_change: a plan switch (moves no credits). reserve / settle / release: a job's hold taken,
 * made final, or given back. refund_reclaim: credits taken back when a payment refund executed
 * (what could not be taken becomes owed); refund_paydown: owed credits paid down from a released
 * hold; refund_reversal: a refund that failed after executing gives its credits back.
 */
export const ledgerKindValidator = literals(
  "grant",
  "reserve",
  "settle",
  "release",
  "purchase",
  "plan_change",
  "adjustment",
  "refund_reclaim",
  "refund_paydown",
  "refund_reversal",
);
export type LedgerKind = Infer<typeof ledgerKindValidator>;

/**
 * A refund's life: `requested` (recorded before TrueLayer is asked, no TrueLayer id yet),
 * `pending` (TrueLayer accepted it), `executed` (money went back), `failed` (final).
 */
export const refundStatusValidator = literals("requested", "pending", "executed", "failed");
export type RefundStatus = Infer<typeof refundStatusValidator>;

/** A payment's refund summary, derived from its refunds (see model/refunds.ts). */
export const paymentRefundStatusValidator = literals("pending", "executed", "failed");

/**
 * What a webhook delivery did (TrueLayer and Clerk): applied (state changed), duplicate (event id
 * seen before), ignored (nothing to do), unknown_payment (TrueLayer: no such payment here).
 */
export const webhookOutcomeValidator = v.object({
  outcome: literals("applied", "duplicate", "ignored", "unknown_payment"),
  message: v.string(),
});
export type WebhookOutcome = Infer<typeof webhookOutcomeValidator>;

export const paymentStatusValidator = literals("pending", "executed", "settled", "failed");
export type PaymentStatus = Infer<typeof paymentStatusValidator>;

export const planValidator = v.object({
  name: planNameValidator,
  monthlyCredits: v.number(),
  price: v.number(),
  markup: v.number(),
});

/** A number per plan (metrics: active users per plan). */
export const planCountsValidator = v.object({
  starter: v.number(),
  creator: v.number(),
  studio: v.number(),
});
export type PlanCounts = Infer<typeof planCountsValidator>;

/**
 * Job durations in one metrics bucket: exact count, sum and maximum, plus a histogram over the
 * fixed bins of `DURATION_BIN_UPPER_MS` (convex/model/metrics.ts; one extra overflow bin).
 */
export const durationStatsValidator = v.object({
  count: v.number(),
  sumMs: v.number(),
  maxMs: v.number(),
  bins: v.array(v.number()),
});
export type DurationStats = Infer<typeof durationStatsValidator>;
