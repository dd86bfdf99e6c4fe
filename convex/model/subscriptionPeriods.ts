import { internal } from "../_generated/api";
import type { Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import type { PlanName } from "../lib/validators";
import { addMonthsUtc } from "./calendar";
import { availableOf, changeLot, expireLot, grantLot, lotKeys, type ExpiringHook } from "./lots";
import { creditsLeft, grantPurchaseLot } from "./paymentCredits";
import { findPlan } from "./plans";
import { currentPlanLot } from "./subscriptionQuotes";
import { startRenewal } from "./subscriptionRenewals";
import {
  GRACE_MS,
  endsAtPeriodEnd,
  isLive,
  nextPeriodPlan,
  paidRenewal,
  periodEnd,
  periodStart,
  renewalLeadMs,
  transitionSubscription,
  type Subscription,
} from "./subscriptionState";

/**
 * Periods: period n runs from `periodStart(anchor, n)` to `periodEnd(anchor, n)` (anchor + n + 1
 * calendar months, UTC, the anchor's day clamped: 31 Jan → 28 Feb → 31 Mar). Each paid period
 * grants one plan lot keyed by (subscription, anchoring, period), expiring at the period end;
 * its unused credits roll over once, capped at the next period's plan (`rolloverOnExpiry`, a
 * hook of the credit core). Every period end and grace end is scheduled with `runAt` and keyed
 * by the moment it was scheduled for; `sweepDue` catches what the scheduler missed.
 */

/**
 * Subscriptions per list (period ends, grace ends, renewals due) per sweep step. A period close
 * costs up to ~57 database queries (renewed with a plan change: the lot's rollover and expiry,
 * the new period's lot, the plan change, each with its triggers and next-expiry refreshes), a
 * grace end or a renewal ~6; 10 of each keep a step with all three lists full of the dearest
 * kind at ~16% of the 4,096-query limit, the tightest (25 reached 41%; measured in bench/).
 */
export const SWEEP_BATCH_SIZE = 10;

export type PeriodGrant = {
  credits: number;
  paymentId?: Id<"payments">;
  source: "period" | "upgrade";
};

/**
 * Makes period `index` (from `anchor`) the current one of an active subscription on `planName`,
 * grants its plan lot (once) and schedules its renewal and its end. A new anchor (or period 0)
 * is a new anchoring: `generation` counts them.
 */
export async function beginPeriod(
  ctx: MutationCtx,
  sub: Subscription,
  planName: PlanName,
  anchor: number,
  index: number,
  grant: PeriodGrant,
  pendingPlan?: PlanName,
) {
  const end = periodEnd(anchor, index);
  const reanchored = sub.anchor !== anchor || index === 0;
  const generation = reanchored ? (sub.generation ?? 0) + 1 : (sub.generation ?? 0);
  const next = await transitionSubscription(ctx, sub, "active", {
    plan: planName,
    anchor,
    generation,
    periodIndex: index,
    currentPeriodStart: periodStart(anchor, index),
    currentPeriodEnd: end,
    pendingPlan: pendingPlan === planName ? undefined : pendingPlan,
    renewal: undefined,
    graceEndsAt: undefined,
  });
  await grantPeriodLot(ctx, next, grant);
  await schedulePeriod(ctx, next);
  return next;
}

/** The current period's plan lot (once); a paid period already over arrives as a month of its own. */
export async function grantPeriodLot(ctx: MutationCtx, sub: Subscription, grant: PeriodGrant) {
  const end = sub.currentPeriodEnd!;
  if (end <= Date.now()) {
    // The period is over already (its close ran that late): a paid one's credits still arrive,
    // as a month of their own; a comp's are moot.
    const payment = grant.paymentId && (await ctx.db.get("payments", grant.paymentId));
    if (payment) {
      await grantPurchaseLot(
        ctx,
        payment,
        `Period ${sub.periodIndex + 1}, paid but over before it began`,
      );
    }
    return;
  }
  if (grant.credits <= 0) return;
  await grantLot(ctx, sub.userId, {
    kind: "period",
    source: grant.source,
    credits: grant.credits,
    expiresAt: end,
    sourceKey: lotKeys.period(sub._id, sub.generation ?? 0, sub.periodIndex),
    paymentId: grant.paymentId,
    subscriptionId: sub._id,
    note: `Subscription period ${sub.periodIndex + 1}`,
  });
}

/** The renewal (`renewalLeadMs()` ahead) and the end of the subscription's current period, keyed by it. */
export async function schedulePeriod(ctx: MutationCtx, sub: Subscription) {
  const end = sub.currentPeriodEnd!;
  const args = { subscriptionId: sub._id, periodEnd: end };
  const renewAt = Math.max(Date.now(), end - renewalLeadMs());
  await ctx.scheduler.runAt(renewAt, internal.subscriptions.startRenewal, args);
  await ctx.scheduler.runAt(end, internal.subscriptions.closePeriod, args);
}

/**
 * The period that ends at `end` is over (scheduled at `end`; keyed by it: a stale or repeated
 * run does nothing). Renews with the paid renewal, cancels, or goes past_due.
 */
export async function closePeriod(
  ctx: MutationCtx,
  subscriptionId: Id<"subscriptions">,
  end: number,
  now: number,
): Promise<boolean> {
  const sub = await ctx.db.get("subscriptions", subscriptionId);
  if (sub === null || sub.status !== "active" || sub.currentPeriodEnd !== end || now < end) {
    return false;
  }
  // Expire the ending plan lot first: its unused credits roll over (`rolloverOnExpiry`).
  const lot = await currentPlanLot(ctx, sub);
  if (lot !== null) {
    await expireLot(ctx, lot, now);
  }
  const next = sub.periodIndex + 1;
  const renewal = paidRenewal(sub);
  if (renewal !== null) {
    // Paid for: the period begins (a cancel or downgrade chosen since waits for its end).
    const payment = (await ctx.db.get("payments", renewal.paymentId))!;
    await beginPeriod(
      ctx,
      sub,
      payment.planName,
      sub.anchor!,
      next,
      { credits: creditsLeft(payment), paymentId: payment._id, source: "period" },
      sub.pendingPlan,
    );
    return true;
  }
  if (endsAtPeriodEnd(sub)) {
    await transitionSubscription(ctx, sub, "canceled", {
      canceledAt: now,
      cancelReason: "requested",
      renewal: undefined,
    });
    return true;
  }
  const graceEndsAt = end + GRACE_MS;
  await transitionSubscription(ctx, sub, "past_due", {
    plan: nextPeriodPlan(sub),
    pendingPlan: undefined,
    periodIndex: next,
    currentPeriodStart: end,
    currentPeriodEnd: periodEnd(sub.anchor!, next),
    graceEndsAt,
  });
  await ctx.scheduler.runAt(graceEndsAt, internal.subscriptions.endGrace, {
    subscriptionId,
    graceEndsAt,
  });
  return true;
}

/** The grace of a past_due subscription ended unpaid: canceled (keyed by the grace's end). */
export async function endGrace(
  ctx: MutationCtx,
  subscriptionId: Id<"subscriptions">,
  graceEndsAt: number,
  now: number,
): Promise<boolean> {
  const sub = await ctx.db.get("subscriptions", subscriptionId);
  if (sub?.status !== "past_due" || sub.graceEndsAt !== graceEndsAt || now < graceEndsAt) {
    return false;
  }
  // Involuntary churn, unless the user had chosen to cancel meanwhile.
  await transitionSubscription(ctx, sub, "canceled", {
    canceledAt: now,
    cancelReason: sub.cancelAtPeriodEnd ? "requested" : "unpaid",
    renewal: undefined,
  });
  return true;
}

/** A past_due subscription's unpaid period is paid (in the grace): it keeps its dates, gets its lot. */
export async function resumePaidPeriod(
  ctx: MutationCtx,
  sub: Subscription,
  grant: PeriodGrant,
): Promise<Subscription> {
  const next = await transitionSubscription(ctx, sub, "active", {
    graceEndsAt: undefined,
    renewal: undefined,
  });
  await grantPeriodLot(ctx, next, grant);
  await schedulePeriod(ctx, next);
  return next;
}

/** Up to a batch of subscriptions whose `field` (a time, indexed after `status`) has come. */
async function dueBy(
  ctx: MutationCtx,
  index: "by_status_and_currentPeriodEnd" | "by_status_and_graceEndsAt",
  status: "active" | "past_due",
  now: number,
) {
  const field = index === "by_status_and_currentPeriodEnd" ? "currentPeriodEnd" : "graceEndsAt";
  return await ctx.db
    .query("subscriptions")
    .withIndex(index, (q) => q.eq("status", status).gte(field, 0).lte(field, now))
    .take(SWEEP_BATCH_SIZE);
}

/** One batch of period ends, grace ends and renewals that are due (behind the scheduler). */
export async function sweepDue(ctx: MutationCtx, now: number) {
  const ends = await dueBy(ctx, "by_status_and_currentPeriodEnd", "active", now);
  for (const sub of ends) {
    await closePeriod(ctx, sub._id, sub.currentPeriodEnd!, now);
  }
  const graces = await dueBy(ctx, "by_status_and_graceEndsAt", "past_due", now);
  for (const sub of graces) {
    await endGrace(ctx, sub._id, sub.graceEndsAt!, now);
  }
  const renewals = await ctx.db
    .query("subscriptions")
    .withIndex("by_renewalDueAt", (q) => q.gte("renewalDueAt", 0).lte("renewalDueAt", now))
    .take(SWEEP_BATCH_SIZE);
  for (const sub of renewals) {
    // Records the renewal (off the index from then on, also a stale row: see startRenewal) and
    // hands it to the renewal creation workpool.
    await startRenewal(ctx, sub._id, sub.currentPeriodEnd!, now);
  }
  const handled = ends.length + graces.length + renewals.length;
  return {
    handled,
    more: [ends, graces, renewals].some((batch) => batch.length === SWEEP_BATCH_SIZE),
  };
}

/**
 * Registered with the credit core (lib/triggers.ts): a subscription period's plan lot expiring
 * at its period end rolls its unused credits over once into a rollover lot capped at the next
 * period's plan and expiring at the next period's end; what the cap leaves expires with the lot
 * (and counts as expired). Rollover lots never roll again; a subscription ending with the period
 * rolls nothing over. The rollover lot keeps the lot's payment: a refund of it still reaches them.
 */
export const rolloverOnExpiry: ExpiringHook = async (ctx, lot) => {
  if (
    lot.subscriptionId === undefined ||
    (lot.source !== "period" && lot.source !== "upgrade") ||
    availableOf(lot) === 0
  ) {
    return null;
  }
  const sub = await ctx.db.get("subscriptions", lot.subscriptionId);
  if (sub === null || sub.anchor === undefined || endsAtPeriodEnd(sub) || !isLive(sub)) {
    return null;
  }
  // Either the period is ending now (not closed yet) or it was just closed.
  const ending = lot.expiresAt === sub.currentPeriodEnd;
  const justClosed = lot.expiresAt === sub.currentPeriodStart;
  if (!ending && !justClosed) {
    return null;
  }
  const nextEnd = ending ? addMonthsUtc(sub.anchor, sub.periodIndex + 2) : sub.currentPeriodEnd!;
  const nextPlan = await findPlan(ctx, ending ? nextPeriodPlan(sub) : sub.plan);
  const credits = Math.min(availableOf(lot), nextPlan?.monthlyCredits ?? 0);
  if (credits === 0 || nextEnd <= Date.now()) {
    return null;
  }
  const entry = {
    kind: "rollover" as const,
    note: `Unused credits of the period ending ${new Date(lot.expiresAt!).toISOString()}`,
  };
  const after = await changeLot(ctx, lot, { remaining: lot.remaining - credits }, entry);
  await grantLot(ctx, lot.userId, {
    ...entry,
    source: "rollover",
    credits,
    expiresAt: nextEnd,
    sourceKey: lotKeys.rollover(lot._id),
    paymentId: lot.paymentId,
    subscriptionId: sub._id,
  });
  return after;
};
