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
 * Every row names the lot it changed (`lotId`; `plan_change` moves nothing and names none).
 * grant: the welcome lot. purchase: a paid plan's lot. adjustment: an operator's correction
 * (positive: a lot of its own; negative: taken from lots in spending order). reserve / settle /
 * release: a job's hold taken from a lot, made final, or given back to it. return: a released
 * hold whose lot expired meanwhile comes back as a `returned` lot. expire: a lot's unheld credits
 * at its `expiresAt`. void: credits of a refunded payment's lot taken back (unheld at once, held
 * ones as their jobs release them). refund_reversal: a refund that failed after executing gives
 * back what it voided. plan_change: a plan switch (moves no credits). period: a subscription
 * period's plan lot. rollover: a period's unused credits moved into the next period's rollover
 * lot (out of the old lot, into the new one). convert: an upgrade's (or an operator's plan
 * change's) unused credits of the old plan lot, converted into the new plan's price.
 */
export const ledgerKindValidator = literals(
  "grant",
  "reserve",
  "settle",
  "release",
  "return",
  "expire",
  "void",
  "purchase",
  "plan_change",
  "adjustment",
  "refund_reversal",
  "period",
  "rollover",
  "convert",
);

/**
 * Where a lot's credits came from. welcome: the sign-up grant. purchase: a plan payment.
 * adjustment: an operator's grant (or a refund reversal). returned: released holds of expired or
 * voided lots. period, rollover, upgrade: subscription periods.
 */
export const lotSourceValidator = literals(
  "welcome",
  "purchase",
  "adjustment",
  "returned",
  "period",
  "rollover",
  "upgrade",
);
export type LotSource = Infer<typeof lotSourceValidator>;

/**
 * active: spendable (credits it holds for jobs included). spent: nothing left. expired: past
 * `expiresAt`, only held credits left (released ones come back as a returned lot). voided: its
 * payment was refunded, only held credits left, each voided when its job releases it.
 */
export const lotStatusValidator = literals("active", "spent", "expired", "voided");
export type LotStatus = Infer<typeof lotStatusValidator>;
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
 * seen before), ignored (nothing to do), unknown_payment / unknown_mandate (TrueLayer: no such
 * payment or mandate here).
 */
export const webhookOutcomeValidator = v.object({
  outcome: literals("applied", "duplicate", "ignored", "unknown_payment", "unknown_mandate"),
  message: v.string(),
});
export type WebhookOutcome = Infer<typeof webhookOutcomeValidator>;

export const paymentStatusValidator = literals("pending", "executed", "settled", "failed");
export type PaymentStatus = Infer<typeof paymentStatusValidator>;

export const planValidator = v.object({
  name: planNameValidator,
  monthlyCredits: v.number(),
  /** Minor units of `currency` (pence for GBP, cents for EUR) a month. */
  price: v.number(),
  /** What checkouts charge in: the deployment's `TRUELAYER_CURRENCY` (GBP or EUR). */
  currency: v.string(),
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

/**
 * What the metrics count in one hour (one shard's bucket, or all shards folded into a day row):
 * the fields of `metricsBuckets` besides its key, and each entry of `metricsDays.hours`.
 */
export const hourStatsValidator = v.object({
  /** Credits settled (charged for good) by jobs that finished this hour. */
  creditsConsumed: v.number(),
  jobsDone: v.number(),
  jobsFailed: v.number(),
  jobsCanceled: v.number(),
  /** Done jobs: createdAt -> done. */
  queuedToDone: durationStatsValidator,
  /** Done jobs: startedAt (of the successful attempt) -> done. */
  runningToDone: durationStatsValidator,
  /** Users whose latest activity falls in this hour, by the plan they had then. */
  activeUsers: planCountsValidator,
  paymentsSucceeded: v.number(),
  paymentsFailed: v.number(),
  renewalsPaid: v.number(),
  renewalsFailed: v.number(),
  subscriptionsCanceled: v.number(),
  /** Credits lots lost at their expiry (unheld credits). */
  creditsExpired: v.number(),
  // Renewals on a mandate and dunning (absent on hours folded before they existed: 0).
  /** Of `renewalsPaid` / `renewalsFailed`: those charged on a mandate (the rest: manual). */
  mandateRenewalsPaid: v.optional(v.number()),
  mandateRenewalsFailed: v.optional(v.number()),
  /** past_due subscriptions whose grace period got paid (a dunning retry or the user). */
  dunningRecoveries: v.optional(v.number()),
  /** Of `subscriptionsCanceled`: the user's cancel took effect / the grace ended unpaid. */
  canceledVoluntarily: v.optional(v.number()),
  canceledUnpaid: v.optional(v.number()),
});
export type HourStats = Infer<typeof hourStatsValidator>;

/**
 * What one counted change adds to its hour's bucket (a `metricsBucketDeltas` row,
 * model/metricsBucketDeltas.ts): counters to add, a done job's durations, active-user moves.
 */
export const bucketDeltaValidator = hourStatsValidator
  .omit("queuedToDone", "runningToDone", "activeUsers")
  .partial()
  .extend({
    queuedToDoneMs: v.optional(v.number()),
    runningToDoneMs: v.optional(v.number()),
    /** Users moved into (+1) or out of (-1) the hour, by plan. */
    activeUsers: v.optional(planCountsValidator.partial()),
  });
export type BucketDelta = Infer<typeof bucketDeltaValidator>;

/**
 * A TrueLayer payment mandate's status (model/mandates.ts): TrueLayer's five, plus `creating`
 * while TrueLayer has not answered our creation call yet.
 */
export const mandateStatusValidator = literals(
  "creating",
  "authorization_required",
  "authorizing",
  "authorized",
  "revoked",
  "failed",
);

/** The mandate types TrueLayer offers (`TRUELAYER_MANDATE_TYPE`). */
export const mandateTypeValidator = literals("sweeping", "commercial", "direct_debit");

/** How a renewal is paid: on the user's mandate, or by them on TrueLayer's page (absent: manual). */
export const renewalMethodValidator = literals("manual", "mandate");

/**
 * The email notices (model/notices.ts, docs/notices.md). `credits_expiring` is the one a user
 * can turn off; the others are about their money and always go.
 */
export const noticeKindValidator = literals(
  "renewal_coming",
  "renewal_paid",
  "renewal_failed",
  "subscription_canceled",
  "auto_renewal_set_up",
  "auto_renewal_revoked",
  "credits_expiring",
);
export type NoticeKind = Infer<typeof noticeKindValidator>;

/**
 * not_sent: decided not to send (`reason` says why); queued: handed to the Resend component;
 * sent, delivered, bounced, complained, failed: as Resend's delivery webhook reported.
 */
export const noticeStatusValidator = literals(
  "not_sent",
  "queued",
  "sent",
  "delivered",
  "bounced",
  "complained",
  "failed",
);
export type NoticeStatus = Infer<typeof noticeStatusValidator>;

/** A user's choices of optional notices (absent: every notice on). */
export const emailPreferencesValidator = v.object({ creditsExpiring: v.boolean() });

/**
 * Why a subscription was canceled: the user's cancel took effect at the period end (voluntary
 * churn), its grace ended unpaid (involuntary), or the user was deleted.
 */
export const cancelReasonValidator = literals("requested", "unpaid", "user_deleted");
