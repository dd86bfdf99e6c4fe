import { defineSchema, defineTable } from "convex/server";
import { migrationsTable } from "convex-helpers/server/migrations";
import { v } from "convex/values";
import {
  creditStatusValidator,
  jobStatusValidator,
  ledgerKindValidator,
  lotSourceValidator,
  lotStatusValidator,
  emailPreferencesValidator,
  mandateStatusValidator,
  mandateTypeValidator,
  noticeKindValidator,
  noticeStatusValidator,
  paymentRefundStatusValidator,
  paymentStatusValidator,
  bucketDeltaValidator,
  hourStatsValidator,
  planCountsValidator,
  planNameValidator,
  refundStatusValidator,
  renewalMethodValidator,
  cancelReasonValidator,
} from "./lib/validators";

export default defineSchema({
  users: defineTable({
    clerkId: v.string(),
    email: v.string(),
    plan: planNameValidator,
    /**
     * Available balance: an integer >= 0, always equal to the sum of the user's ledger deltas and
     * to Σ (remaining − held) over the user's active lots (an exact cache of `creditLots`).
     */
    credits: v.number(),
    createdAt: v.number(),
    /**
     * Credits held by the user's unfinished jobs (reserved, not yet settled or refunded). Kept
     * with each reserve/settle/refund so `getCredits` stays one read. Absent means 0.
     */
    reservedCredits: v.optional(v.number()),
    /** The next expiry of available credits (cached with every lot change; absent: none). */
    nextExpiry: v.optional(v.object({ credits: v.number(), at: v.number() })),
    /** Operators grant "admin" with `users:setRole`; admins can read metrics. */
    role: v.optional(v.literal("admin")),
    /** Set when Clerk reports the user deleted: the row stays for accounting, anonymised. */
    deletedAt: v.optional(v.number()),
    /**
     * Metrics: the hour (start, ms) of the user's latest activity and the plan it was counted
     * under. The user is counted in exactly that hour's bucket (see convex/model/metrics.ts).
     */
    lastActiveHour: v.optional(v.number()),
    lastActivePlan: v.optional(planNameValidator),
    /** Optional email notices the user turned off (`notices.setEmailPreferences`; absent: all on). */
    emailPreferences: v.optional(emailPreferencesValidator),
  }).index("by_clerkId", ["clerkId"]),

  jobs: defineTable({
    userId: v.id("users"),
    prompt: v.string(),
    imageUrl: v.optional(v.string()),
    /** An image the owner uploaded to Convex file storage (see model/images.ts). */
    imageStorageId: v.optional(v.id("_storage")),
    durationSec: v.number(),
    /** Credits reserved for this job when it was created (its price). */
    creditsUsed: v.number(),
    /** Which lots the hold took its credits from (set on every hold; model/lotsMigration.ts set old ones). */
    allocations: v.optional(v.array(v.object({ lotId: v.id("creditLots"), credits: v.number() }))),
    r2Url: v.optional(v.string()),
    status: jobStatusValidator,
    expiresAt: v.optional(v.number()),
    seed: v.optional(v.number()),
    cfg: v.optional(v.number()),
    createdAt: v.number(),
    /** Where the job's reservation stands: held until settled (done) or refunded (failed/canceled). */
    creditStatus: creditStatusValidator,
    error: v.optional(v.string()),
    idempotencyKey: v.optional(v.string()),
    startedAt: v.optional(v.number()),
    finishedAt: v.optional(v.number()),
    // Worker lease (see convex/model/worker.ts).
    workerId: v.optional(v.string()),
    leaseExpiresAt: v.optional(v.number()),
    /** How many times a worker has claimed the job. */
    attempt: v.optional(v.number()),
    /** 0–100, reported by the worker's heartbeats. */
    progress: v.optional(v.number()),
    // The video in the private bucket (R2 configured; see convex/lib/r2.ts, model/videos.ts).
    /**
     * While running: the key the current attempt uploads to, decided at the claim. Once done:
     * the final key the completion copied the checked upload to (no upload URL can write it).
     */
    videoKey: v.optional(v.string()),
    /** Its size, checked (HEAD) at completion: set means the job's video is in the bucket. */
    videoBytes: v.optional(v.number()),
    /** When the job's object was deleted from the bucket (expiry, failure, cancel). */
    videoDeletedAt: v.optional(v.number()),
  })
    .index("by_userId", ["userId", "createdAt"])
    .index("by_status", ["status", "createdAt"])
    .index("by_status_and_expiresAt", ["status", "expiresAt"])
    .index("by_status_and_leaseExpiresAt", ["status", "leaseExpiresAt"])
    .index("by_userId_and_idempotencyKey", ["userId", "idempotencyKey"])
    .index("by_userId_and_creditStatus", ["userId", "creditStatus"])
    .index("by_imageStorageId_and_status", ["imageStorageId", "status"]),

  /**
   * Input-image uploads, each its user's from the upload URL on (model/imageUploads.ts): a row per
   * upload URL granted, completed with its file by the upload route. Only its user can use it.
   */
  imageUploads: defineTable({
    userId: v.id("users"),
    /** The uploaded file; absent while the upload URL waits for it. */
    storageId: v.optional(v.id("_storage")),
    /** While the URL waits: its single-use secret, and when it expires. */
    uploadToken: v.optional(v.string()),
    uploadUrlExpiresAt: v.optional(v.number()),
    /** As checked by the upload route (the file's type and signature, its size). */
    contentType: v.optional(v.string()),
    size: v.optional(v.number()),
    /** When a job first used it; until then it counts against the user's unused uploads. */
    usedAt: v.optional(v.number()),
    createdAt: v.number(),
  })
    .index("by_storageId", ["storageId"])
    .index("by_uploadToken", ["uploadToken"])
    .index("by_userId_and_usedAt", ["userId", "usedAt"]),

  /**
   * Objects of the video bucket waiting to be deleted (expired videos, the uploads of attempts
   * that ended: failed, canceled, retried, or done and copied to their final key). A row goes
   * when its DELETE succeeded (after `writableUntil`, if set); failed deletions are retried from
   * `nextAttemptAt` by `media.sweepVideoDeletions` (model/videoDeletions.ts).
   */
  videoDeletions: defineTable({
    jobId: v.id("jobs"),
    key: v.string(),
    reason: v.union(
      v.literal("expired"),
      v.literal("failed"),
      v.literal("canceled"),
      v.literal("retried"),
      v.literal("completed"),
    ),
    /**
     * Until then an upload URL may still write the key (its expiry plus a margin): a deletion
     * that succeeds earlier is run once more from this time.
     */
    writableUntil: v.optional(v.number()),
    /** Deletion runs scheduled so far (the first with the row, then one per sweep). */
    attempts: v.number(),
    nextAttemptAt: v.number(),
    lastError: v.optional(v.string()),
    createdAt: v.number(),
  }).index("by_nextAttemptAt", ["nextAttemptAt"]),

  plans: defineTable({
    name: planNameValidator,
    monthlyCredits: v.number(),
    /** Minor units of the currency checkouts charge in (`TRUELAYER_CURRENCY`). */
    price: v.number(),
    /** Percent. */
    markup: v.number(),
  }).index("by_name", ["name"]),

  payments: defineTable({
    userId: v.id("users"),
    /** TrueLayer's payment id. */
    trueLayerTxnId: v.string(),
    /**
     * TrueLayer's resource token for the payment's page, kept with its id: a checkout asked for
     * again while its page is valid gets both back (model/payments.ts, `startCheckout`).
     */
    resourceToken: v.optional(v.string()),
    /** Minor units of `currency`, fixed at checkout. */
    amount: v.number(),
    /** Credits added to the balance: `creditsPurchased` once the payment succeeded, else 0. */
    creditsAdded: v.number(),
    /** Credits this payment buys, fixed at checkout with `amount`. */
    creditsPurchased: v.number(),
    timestamp: v.number(),
    status: paymentStatusValidator,
    planName: planNameValidator,
    currency: v.string(),
    failureReason: v.optional(v.string()),
    /** When TrueLayer executed/settled the payment. */
    succeededAt: v.optional(v.number()),
    /** Subscription payments: which subscription, and what the payment is for. */
    subscriptionId: v.optional(v.id("subscriptions")),
    purpose: v.optional(v.union(v.literal("start"), v.literal("renewal"), v.literal("upgrade"))),
    // The quote: what the payment was priced for, checked again when it succeeds (see
    // docs/payments.md, "the quote rule"). `amount`, `planName`, `purpose` are part of it.
    /** The period (index from the anchor) it was quoted for: renewals pay it, upgrades convert its lot. */
    periodIndex: v.optional(v.number()),
    /** The anchoring (subscription `generation`) that period belongs to. */
    generation: v.optional(v.number()),
    /** The plan's price when quoted: `amount` at this price per credit is what it is worth. */
    listPrice: v.optional(v.number()),
    /** Upgrades: the plan upgraded from, and its unused credits priced in (converted when paid). */
    fromPlan: v.optional(planNameValidator),
    creditsConverted: v.optional(v.number()),
    /** Why a failed payment failed: TrueLayer refused it, the payer's bank did, or we dropped it. */
    failureKind: v.optional(
      v.union(v.literal("provider"), v.literal("payment"), v.literal("superseded")),
    ),
    /** Renewals: paid on a mandate (which one) or on TrueLayer's page (absent: the page). */
    method: v.optional(renewalMethodValidator),
    mandateId: v.optional(v.id("mandates")),
    /**
     * Renewals on a mandate: which charge of the period this is (0 the first, then the dunning
     * retries), part of its idempotency key (model/mandateRenewals.ts).
     */
    chargeAttempt: v.optional(v.number()),
    // Refund summary, recomputed from the payment's `refunds` rows whenever one changes.
    refundStatus: v.optional(paymentRefundStatusValidator),
    /** Minor units refunded (executed refunds). */
    refundedAmount: v.optional(v.number()),
    /** Credits taken back by the executed refunds (at execution and paid down since). */
    creditsReclaimed: v.optional(v.number()),
    /** Credits the executed refunds could not take back (consumed before they executed). */
    outstandingCredits: v.optional(v.number()),
  })
    .index("by_userId", ["userId", "timestamp"])
    .index("by_trueLayerTxnId", ["trueLayerTxnId"])
    .index("by_outstandingCredits", ["outstandingCredits"]),

  /**
   * One subscription per user at a time (model/subscriptions.ts): monthly periods computed from
   * the anchor, each paid period granting one plan lot.
   */
  subscriptions: defineTable({
    userId: v.id("users"),
    plan: planNameValidator,
    status: v.union(
      v.literal("incomplete"),
      v.literal("active"),
      v.literal("past_due"),
      v.literal("canceled"),
    ),
    /** When the first (or an upgrade) payment succeeded; period n ends at anchor + n + 1 months. */
    anchor: v.optional(v.number()),
    periodIndex: v.number(),
    /** The currency its payments are charged in (for the MRR metric). */
    currency: v.optional(v.string()),
    /** How many times the anchor was set (start, upgrades, comps): part of each period's key. */
    generation: v.optional(v.number()),
    currentPeriodStart: v.optional(v.number()),
    currentPeriodEnd: v.optional(v.number()),
    cancelAtPeriodEnd: v.boolean(),
    /** A downgrade scheduled for the period end. */
    pendingPlan: v.optional(planNameValidator),
    /** The renewal payment of the next period, once created (3 days before the period ends). */
    renewal: v.optional(
      v.object({
        paymentId: v.id("payments"),
        periodIndex: v.number(),
        dueAt: v.number(),
        amount: v.number(),
        currency: v.string(),
        status: v.union(v.literal("pending"), v.literal("paid"), v.literal("failed")),
        payUrl: v.union(v.string(), v.null()),
        /** The plan it pays for (absent on renewals made before it was recorded). */
        planName: v.optional(planNameValidator),
        /** Creations TrueLayer refused so far, and when the next is tried (before the period end). */
        attempts: v.optional(v.number()),
        retryAt: v.optional(v.number()),
        /** Charged on the user's mandate, or paid by them on the page (absent: manual). */
        method: v.optional(renewalMethodValidator),
        /** Charges of this period on the mandate the payer's bank refused so far (dunning). */
        refusals: v.optional(v.number()),
        /** Manual although the user has an authorised mandate: why (e.g. over its constraints). */
        fallbackReason: v.optional(v.string()),
      }),
    ),
    /** Derived (model/subscriptionState.ts): when the next renewal payment is to be created. */
    renewalDueAt: v.optional(v.number()),
    /** past_due: when the grace ends and the subscription is canceled if still unpaid. */
    graceEndsAt: v.optional(v.number()),
    canceledAt: v.optional(v.number()),
    /** Why it was canceled: the user's cancel took effect, the grace ended unpaid, or deletion. */
    cancelReason: v.optional(cancelReasonValidator),
    createdAt: v.number(),
  })
    .index("by_userId", ["userId", "createdAt"])
    .index("by_status_and_currentPeriodEnd", ["status", "currentPeriodEnd"])
    .index("by_status_and_graceEndsAt", ["status", "graceEndsAt"])
    .index("by_renewalDueAt", ["renewalDueAt"]),

  /**
   * TrueLayer payment mandates ("bank on file", model/mandates.ts): a user authorises one once on
   * TrueLayer's page, and renewals are then paid on it without them. At most one per user is not
   * ended (revoked or failed).
   */
  mandates: defineTable({
    userId: v.id("users"),
    /** TrueLayer's mandate id; absent while `creating`. */
    trueLayerMandateId: v.optional(v.string()),
    /** For TrueLayer's hosted page while the user has to authorise it. */
    resourceToken: v.optional(v.string()),
    type: mandateTypeValidator,
    status: mandateStatusValidator,
    currency: v.string(),
    /** Constraints (minor units): the most one payment may take, and per calendar month. */
    maxAmount: v.number(),
    periodicLimit: v.number(),
    createdAt: v.number(),
    authorizedAt: v.optional(v.number()),
    /** When it ended (revoked or failed), and why. */
    endedAt: v.optional(v.number()),
    failureReason: v.optional(v.string()),
  })
    .index("by_userId", ["userId", "createdAt"])
    .index("by_trueLayerMandateId", ["trueLayerMandateId"]),

  /**
   * Email notices (model/notices.ts, docs/notices.md): one row per (user, kind, key), the key
   * naming the period, payment, mandate, subscription or lot it is about, so a notice is decided
   * once however often its code path runs. The email itself is the Resend component's.
   */
  notices: defineTable({
    userId: v.id("users"),
    kind: noticeKindValidator,
    /** What it is about, e.g. `period:<subscriptionId>:<generation>:<period>`, `lot:<lotId>`. */
    key: v.string(),
    subject: v.string(),
    status: noticeStatusValidator,
    /** not_sent: why; failed: what Resend or the component said. */
    reason: v.optional(v.string()),
    /** The Resend component's email id, once handed to it (delivery events find the row by it). */
    emailId: v.optional(v.string()),
    createdAt: v.number(),
    /** When `status` last changed. */
    updatedAt: v.number(),
  })
    .index("by_userId_and_kind_and_key", ["userId", "kind", "key"])
    .index("by_emailId", ["emailId"]),

  /**
   * Where the credits-expiring sweep got to (model/noticeTriggers.ts): the last lot it looked at,
   * in (expiresAt, _creationTime) order, so each lot is looked at once. One row per sweep name.
   */
  noticeSweeps: defineTable({
    name: v.literal("credits_expiring"),
    expiresAt: v.number(),
    creationTime: v.number(),
  }).index("by_name", ["name"]),

  /** One row per refund of a payment, ours or made in TrueLayer Console (see model/refunds.ts). */
  refunds: defineTable({
    paymentId: v.id("payments"),
    userId: v.id("users"),
    /** TrueLayer's refund id; absent while `requested` (TrueLayer has not answered yet). */
    trueLayerRefundId: v.optional(v.string()),
    status: refundStatusValidator,
    /** Minor units of the payment's currency. */
    amount: v.number(),
    /** operator: `payments:refundPayment`; console: first seen in a webhook. */
    origin: v.union(v.literal("operator"), v.literal("console")),
    /** Credits this refund takes back (set when it executes: in proportion, rounded down). */
    creditsDue: v.optional(v.number()),
    /** Of `creditsDue`: voided (unheld at execution, then held ones as their jobs released). */
    creditsReclaimed: v.number(),
    /** Of `creditsDue`: still held by unfinished jobs; voided when they release them. */
    pendingCredits: v.optional(v.number()),
    /** Of `creditsDue`: not there to take back (spent, or expired). Operators follow it up. */
    outstandingCredits: v.number(),
    failureReason: v.optional(v.string()),
    createdAt: v.number(),
    executedAt: v.optional(v.number()),
    failedAt: v.optional(v.number()),
  })
    .index("by_trueLayerRefundId", ["trueLayerRefundId"])
    .index("by_paymentId", ["paymentId", "createdAt"])
    .index("by_outstandingCredits", ["outstandingCredits"]),

  /**
   * Credit lots (model/lots.ts): every credit in a balance belongs to one, with its source and
   * expiry. Per lot 0 <= voidOnRelease <= held <= remaining <= granted.
   */
  creditLots: defineTable({
    userId: v.id("users"),
    source: lotSourceValidator,
    /** Unique per grant (one lot per payment, period, adjustment...): a replay never grants twice. */
    sourceKey: v.string(),
    granted: v.number(),
    /** Not yet consumed, expired or voided (held credits included). */
    remaining: v.number(),
    /** Held by unfinished jobs (see `jobs.allocations`). */
    held: v.number(),
    /** Of `held`: credits of a refunded payment, voided when their job releases them. */
    voidOnRelease: v.optional(v.number()),
    /** Absent: never expires. */
    expiresAt: v.optional(v.number()),
    status: lotStatusValidator,
    /** status !== "active": lists show live lots first. */
    closed: v.boolean(),
    paymentId: v.optional(v.id("payments")),
    /** Period, rollover and upgrade lots: their subscription. */
    subscriptionId: v.optional(v.id("subscriptions")),
    createdAt: v.number(),
  })
    .index("by_sourceKey", ["sourceKey"])
    .index("by_paymentId", ["paymentId"])
    .index("by_userId_and_status", ["userId", "status", "expiresAt"])
    .index("by_userId_and_closed", ["userId", "closed"])
    .index("by_status_and_expiresAt", ["status", "expiresAt"]),

  /** One row per change of a user's available balance. */
  ledger: defineTable({
    userId: v.id("users"),
    /** Signed integer change of available credits. */
    delta: v.number(),
    balanceAfter: v.number(),
    /** Signed change of credits held by jobs (reserve +, settle/release -). Absent: 0. */
    reservedDelta: v.optional(v.number()),

    kind: ledgerKindValidator,
    jobId: v.optional(v.id("jobs")),
    paymentId: v.optional(v.id("payments")),
    refundId: v.optional(v.id("refunds")),
    /** The lot this row changed. */
    lotId: v.optional(v.id("creditLots")),
    note: v.optional(v.string()),
    createdAt: v.number(),
  })
    .index("by_userId", ["userId", "createdAt"])
    .index("by_jobId", ["jobId"])
    .index("by_paymentId", ["paymentId"]),

  planChanges: defineTable({
    userId: v.id("users"),
    from: planNameValidator,
    to: planNameValidator,
    createdAt: v.number(),
  }).index("by_userId", ["userId", "createdAt"]),

  /** Webhook deliveries already processed, so a replayed event is recognised. */
  webhookEvents: defineTable({
    provider: v.union(v.literal("truelayer"), v.literal("clerk")),
    eventId: v.string(),
    type: v.string(),
    receivedAt: v.number(),
  })
    .index("by_provider_and_eventId", ["provider", "eventId"])
    .index("by_receivedAt", ["receivedAt"]),

  /**
   * Monitoring rollups: one row per (UTC hour, shard), written only by the fold of the changes
   * delta rows (`metricsBucketDeltas`), never by the change it counts. The shard is a hash of
   * the job, user or payment id. See convex/model/metricsBuckets.ts.
   */
  metricsBuckets: defineTable({
    /** Start of the UTC hour, ms since the epoch. */
    hour: v.number(),
    /** 0 .. METRIC_SHARDS - 1. */
    shard: v.number(),
    ...hourStatsValidator.fields,
    // Subscriptions and lots (absent on rows written before they existed: 0).
    renewalsPaid: v.optional(v.number()),
    renewalsFailed: v.optional(v.number()),
    subscriptionsCanceled: v.optional(v.number()),
    creditsExpired: v.optional(v.number()),
    /** Set once the hour is folded into its `metricsDays` row (model/metricsDays.ts). */
    folded: v.optional(v.boolean()),
  }).index("by_hour_and_shard", ["hour", "shard"]),

  /**
   * The buckets of each complete hour, all shards added up, one row per UTC day: what
   * `metrics.overview` reads for every hour it covers. Written only by the hourly fold
   * (`metrics:foldHours`), never by the changes it counts. See convex/model/metricsDays.ts.
   */
  metricsDays: defineTable({
    /** Start of the UTC day, ms since the epoch. */
    day: v.number(),
    /** The day's folded hours, oldest first: `hours[i]` is the hour starting `day + i` hours. */
    hours: v.array(hourStatsValidator),
  }).index("by_day", ["day"]),

  /**
   * Active-user changes made to an hour after it was folded (a user whose latest activity was
   * in it became active again), one row per shard like the buckets. `metrics.overview` adds them
   * to the folded hours; the prune cron drops hours past the retention.
   */
  /**
   * What each counted change adds to its hour's bucket (append-only, so the many changes of a
   * cron drain never write a common document): inserted by the metrics triggers, added into
   * `metricsBuckets` and deleted by `metrics:foldBucketDeltas`, oldest first (creation time).
   * See convex/model/metricsBucketDeltas.ts.
   */
  metricsBucketDeltas: defineTable({
    /** The bucket it adds to: start of the UTC hour (ms) and shard. */
    hour: v.number(),
    shard: v.number(),
    delta: bucketDeltaValidator,
    /** false: add only if the bucket exists (a user moving out of an hour that may be pruned). */
    create: v.optional(v.boolean()),
  }).index("by_hour", ["hour"]),

  metricsFoldedActivity: defineTable({
    shard: v.number(),
    /** Per folded hour, the change in its active users since the fold, by plan. */
    hours: v.array(v.object({ hour: v.number(), ...planCountsValidator.fields })),
  }).index("by_shard", ["shard"]),

  /**
   * Gauges of the subscriptions as of the last fold: active subscriptions per plan and their
   * monthly recurring revenue per currency, in one row written only by the fold
   * (`metrics:foldSubscriptionTotals`, model/subscriptionTotals.ts), never by a subscription
   * change. `metrics.overview` adds the deltas not folded yet.
   */
  subscriptionTotals: defineTable({
    /** Rows of the sharded gauges before the fold existed had one (0 .. 15); the first fold merges them. */
    shard: v.optional(v.number()),
    active: planCountsValidator,
    /** Minor units per currency. */
    mrr: v.record(v.string(), v.number()),
  }),

  /**
   * What each subscription change did to the gauges (append-only, so concurrent changes never
   * touch the same document): inserted by the trigger on `subscriptions`, summed into
   * `subscriptionTotals` and deleted by the fold, oldest first (by creation time).
   */
  subscriptionTotalDeltas: defineTable({
    /** Change in active subscriptions, by plan. */
    active: planCountsValidator,
    /** Change in monthly recurring revenue, minor units per currency. */
    mrr: v.record(v.string(), v.number()),
  }),

  /** Progress of data migrations (convex-helpers' migrations; convex/migrations.ts). */
  migrations: migrationsTable,
});
