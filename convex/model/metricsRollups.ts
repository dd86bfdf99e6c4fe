import type { Change } from "convex-helpers/server/triggers";
import type { DataModel, Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import type { BucketDelta, PlanName } from "../lib/validators";
import { recordBucketDelta } from "./metricsBucketDeltas";
import { hourStart, shardOf } from "./metricsBuckets";
import { recordSubscriptionTotalsChange } from "./subscriptionTotals";

/**
 * What each change adds to the monitoring rollups (the write half of the metrics). The
 * `on*Change` functions run as database triggers (registered in convex/lib/triggers.ts) in the
 * same transaction as the write they count, so no write path has to remember to call them. Each
 * records a delta row for its hour's bucket (metricsBucketDeltas.ts: no shared row written here):
 *
 * - a job that becomes done, failed or canceled: outcome counts and, for done, its durations;
 * - a job whose hold is settled: credits consumed;
 * - a payment that first succeeds, or fails: payment outcomes;
 * - a user created, a job created, a plan changed: the user counts as active (the one other
 *   activity, signing in again, is marked by `upsertUser` through `recordUserActivity`).
 */

const isSucceeded = (status: Doc<"payments">["status"] | undefined) =>
  status === "executed" || status === "settled";

export async function onJobChange(ctx: MutationCtx, change: Change<DataModel, "jobs">) {
  const { oldDoc, newDoc } = change;
  if (newDoc === null) {
    return;
  }
  if (oldDoc === null) {
    const owner = await ctx.db.get("users", newDoc.userId);
    if (owner !== null) {
      await recordUserActivity(ctx, owner);
    }
    return;
  }
  // A job finishing writes its status and its hold's fate together: one delta.
  const to = newDoc.status;
  const finished = oldDoc.status !== to && (to === "done" || to === "failed" || to === "canceled");
  const settled = oldDoc.creditStatus === "held" && newDoc.creditStatus === "settled";
  if (finished || settled) {
    const now = newDoc.finishedAt ?? Date.now();
    await recordBucketDelta(ctx, hourStart(now), shardOf(newDoc._id), {
      ...(finished ? jobOutcomeDelta(newDoc, to, now) : {}),
      ...(settled ? { creditsConsumed: newDoc.creditsUsed } : {}),
    });
  }
}

export async function onPaymentChange(ctx: MutationCtx, change: Change<DataModel, "payments">) {
  const { oldDoc, newDoc } = change;
  if (newDoc === null || oldDoc?.status === newDoc.status || isSucceeded(oldDoc?.status)) {
    return;
  }
  if (isSucceeded(newDoc.status) || newDoc.status === "failed") {
    const succeeded = isSucceeded(newDoc.status);
    await recordPaymentOutcome(ctx, { paymentId: newDoc._id, succeeded });
    // A renewal the customer's own change superseded did not fail.
    if (newDoc.purpose === "renewal" && newDoc.failureKind !== "superseded") {
      const onMandate = newDoc.method === "mandate" ? 1 : 0;
      await recordBucketDelta(
        ctx,
        hourStart(Date.now()),
        shardOf(newDoc._id),
        succeeded
          ? { renewalsPaid: 1, mandateRenewalsPaid: onMandate }
          : { renewalsFailed: 1, mandateRenewalsFailed: onMandate },
      );
    }
  }
}

/**
 * Subscriptions: one more canceled in the hour it happens, and the gauges (active per plan,
 * monthly recurring revenue per currency) moved from what the subscription was to what it is,
 * as a delta row the fold adds up later (model/subscriptionTotals.ts: no shared row written here).
 */
export async function onSubscriptionChange(
  ctx: MutationCtx,
  change: Change<DataModel, "subscriptions">,
) {
  const { oldDoc, newDoc } = change;
  const id = (newDoc ?? oldDoc)!._id;
  if (newDoc?.status === "canceled" && oldDoc?.status !== "canceled") {
    await recordBucketDelta(ctx, hourStart(Date.now()), shardOf(id), { subscriptionsCanceled: 1 });
  }
  await recordSubscriptionTotalsChange(ctx, oldDoc, newDoc);
}

/**
 * Subscriptions' outcomes (a trigger of its own, next to `onSubscriptionChange`): a canceled
 * one by why (the user's cancel took effect: voluntary churn; the grace ended unpaid:
 * involuntary), and a past_due one whose grace period got paid (a dunning recovery).
 */
export async function onSubscriptionOutcome(
  ctx: MutationCtx,
  change: Change<DataModel, "subscriptions">,
) {
  const { oldDoc, newDoc } = change;
  if (oldDoc === null || newDoc === null || oldDoc.status === newDoc.status) return;
  const delta: BucketDelta =
    newDoc.status === "canceled"
      ? {
          canceledVoluntarily: newDoc.cancelReason === "requested" ? 1 : 0,
          canceledUnpaid: newDoc.cancelReason === "unpaid" ? 1 : 0,
        }
      : { dunningRecoveries: oldDoc.status === "past_due" && newDoc.status === "active" ? 1 : 0 };
  if (Object.values(delta).some((n) => n !== 0)) {
    await recordBucketDelta(ctx, hourStart(Date.now()), shardOf(newDoc._id), delta);
  }
}

/** Credit lots: what a lot loses when it expires (its unheld credits), in the hour it expires. */
export async function onLotChange(ctx: MutationCtx, change: Change<DataModel, "creditLots">) {
  const { oldDoc, newDoc } = change;
  if (oldDoc?.status === "active" && newDoc?.status === "expired") {
    const lost = oldDoc.remaining - newDoc.remaining;
    if (lost > 0) {
      await recordBucketDelta(ctx, hourStart(Date.now()), shardOf(newDoc._id), {
        creditsExpired: lost,
      });
    }
  }
}

export async function onUserChange(ctx: MutationCtx, change: Change<DataModel, "users">) {
  const { oldDoc, newDoc } = change;
  if (newDoc === null || newDoc.deletedAt !== undefined) {
    return;
  }
  if (oldDoc === null || oldDoc.plan !== newDoc.plan) {
    await recordUserActivity(ctx, newDoc);
  }
}
/**
 * What a job that just became done, failed or canceled adds to the bucket of the hour it
 * finished. For done jobs also its durations: queued->done from `createdAt`, running->done from
 * the `startedAt` of the attempt that succeeded (a retried job's earlier attempts are not
 * included).
 */
function jobOutcomeDelta(
  job: Doc<"jobs">,
  outcome: "done" | "failed" | "canceled",
  finishedAt: number,
): BucketDelta {
  if (outcome === "done") {
    return {
      jobsDone: 1,
      queuedToDoneMs: finishedAt - job.createdAt,
      runningToDoneMs: job.startedAt === undefined ? undefined : finishedAt - job.startedAt,
    };
  }
  return outcome === "failed" ? { jobsFailed: 1 } : { jobsCanceled: 1 };
}

/**
 * A payment reached its outcome: call exactly once per payment, when it first succeeds
 * (credits granted) or fails for good. Not for refunds, not again on executed -> settled.
 */
export async function recordPaymentOutcome(
  ctx: MutationCtx,
  payment: { paymentId: Id<"payments">; succeeded: boolean },
  now = Date.now(),
): Promise<void> {
  await recordBucketDelta(
    ctx,
    hourStart(now),
    shardOf(payment.paymentId),
    payment.succeeded ? { paymentsSucceeded: 1 } : { paymentsFailed: 1 },
  );
}

/**
 * The user was active now (signed in, created a job or changed plan). Each user is counted in
 * exactly one bucket: the hour of their latest activity, under the plan they had then. So the
 * buckets of any window ending now add up to the distinct users active in that window, by
 * their current plan. Writes only when the hour or the plan changes (at most once an hour per
 * user otherwise). Returns the fields it patched on the user.
 */
export async function recordUserActivity(
  ctx: MutationCtx,
  user: Doc<"users">,
  plan: PlanName = user.plan,
  now = Date.now(),
): Promise<Partial<Doc<"users">>> {
  const hour = hourStart(now);
  const previousHour = user.lastActiveHour;
  const previousPlan = user.lastActivePlan;
  if (previousHour === hour && previousPlan === plan) {
    return {};
  }
  const shard = shardOf(user._id);
  if (previousHour !== undefined && previousPlan !== undefined) {
    if (previousHour === hour) {
      await recordBucketDelta(ctx, hour, shard, { activeUsers: { [previousPlan]: -1, [plan]: 1 } });
    } else {
      // The old bucket may have been pruned: then there is nothing to take the user out of.
      await recordBucketDelta(
        ctx,
        previousHour,
        shard,
        { activeUsers: { [previousPlan]: -1 } },
        false,
      );
      await recordBucketDelta(ctx, hour, shard, { activeUsers: { [plan]: 1 } });
    }
  } else {
    await recordBucketDelta(ctx, hour, shard, { activeUsers: { [plan]: 1 } });
  }
  const patch = { lastActiveHour: hour, lastActivePlan: plan };
  await ctx.db.patch("users", user._id, patch);
  return patch;
}
