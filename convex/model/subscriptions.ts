import { internal } from "../_generated/api";
import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import type { PlanName } from "../lib/validators";
import {
  DAY_MS,
  addMonthsUtc,
  availableOf,
  changeLot,
  creditsLeft,
  expireLot,
  findLotBySourceKey,
  grantLot,
  grantPurchaseLot,
} from "./lots";
import { endsAtPeriodEnd, nextPeriodPlan, paidRenewal } from "./nextPeriod";
import { requirePlan } from "./plans";
import { changePlan } from "./users";

/**
 * Subscriptions: one per user at a time, on monthly periods computed from a fixed anchor (never
 * chained from the previous period's end), each paid period granting one plan lot. Life:
 *
 *   incomplete ──(first payment)──> active ──(period end, renewal unpaid)──> past_due
 *                                     ▲  │                                     │
 *                                     │  └──(period end, cancelAtPeriodEnd)──> canceled
 *                                     └──────(renewal paid within grace)───────┘ (grace over: canceled)
 *
 * - Period n runs from `periodStart(anchor, n)` to `periodEnd(anchor, n)` = anchor + n + 1
 *   calendar months (UTC, day clamped, the anchor's day kept: 31 Jan → 28 Feb → 31 Mar).
 * - Each paid period grants one lot keyed by (subscription, anchor, period), expiring at the
 *   period end: granted at most once whatever is replayed. At the period end, its unused credits
 *   roll over once into a rollover lot capped at the next period's plan (see model/lots.ts,
 *   `rolloverFromExpiringLot`); a subscription that ends with the period rolls nothing over.
 * - A renewal paid before the period ends is never lost: the paid period begins even if the
 *   subscription was canceled meanwhile (it then ends with that period), a downgrade scheduled
 *   after it waits for that period's end, an upgrade or comp credits it as a lot of its own, and
 *   a refund before its period begins takes back from what that period will grant.
 * - Three days before a period ends `createRenewal` creates the renewal payment with TrueLayer;
 *   paid before the end, the next period is granted at its start (`closePeriod`). Unpaid at the
 *   end: `past_due` for 7 days with the period's dates kept; paid then, the period's lot is
 *   granted; grace over: `canceled`. A payment that arrives after cancellation starts a new
 *   subscription from that moment, never a renewal of the old one.
 * - Upgrades (`payments.createCheckout` to a plan with more monthly credits) cost the new price
 *   minus the value of the current plan lot's unused credits; when paid, those credits are
 *   converted, a new period starts then (anchor reset) with the new plan's lot. Downgrades and
 *   cancellation take effect at the period end.
 * - Every period end, renewal and grace end is scheduled with `runAt` and keyed by the moment it
 *   was scheduled for: a stale or duplicate run changes nothing; a bounded sweep catches misses.
 */

export const RENEWAL_LEAD_MS = 3 * DAY_MS;
export const GRACE_MS = 7 * DAY_MS;
/**
 * Subscriptions per list (period ends, grace ends, renewals due) per sweep step. A period close
 * costs up to ~57 database queries (renewed with a plan change: the lot's rollover and expiry,
 * the new period's lot, the plan change, each with its triggers and next-expiry refreshes), a
 * grace end or a renewal ~6; 10 of each keep a step with all three lists full of the dearest
 * kind at ~16% of the 4,096-query limit, the tightest (25 reached 41%; measured in bench/).
 */
export const SWEEP_BATCH_SIZE = 10;

type Subscription = Doc<"subscriptions">;

export function periodStart(anchor: number, index: number): number {
  return addMonthsUtc(anchor, index);
}

export function periodEnd(anchor: number, index: number): number {
  return addMonthsUtc(anchor, index + 1);
}

/**
 * The key of a period's plan lot: one lot per (subscription, anchoring, period), where the
 * anchoring counts how often the anchor was set (start, upgrades, comps).
 */
export function periodLotKey(
  subscriptionId: Id<"subscriptions">,
  generation: number,
  index: number,
) {
  return `period:${subscriptionId}:${generation}:${index}`;
}

export async function currentSubscription(
  ctx: QueryCtx,
  userId: Id<"users">,
): Promise<Subscription | null> {
  return await ctx.db
    .query("subscriptions")
    .withIndex("by_userId", (q) => q.eq("userId", userId))
    .order("desc")
    .first();
}

const isLive = (sub: Subscription | null): sub is Subscription =>
  sub !== null && (sub.status === "active" || sub.status === "past_due");

/** The current period's plan lot, if it was granted. */
async function currentPlanLot(ctx: QueryCtx, sub: Subscription) {
  if (sub.anchor === undefined) return null;
  return await findLotBySourceKey(ctx, periodLotKey(sub._id, sub.generation ?? 0, sub.periodIndex));
}

/** Round half up to a minor unit: unused credits valued at the plan's price per credit. */
export function unusedCreditValue(unused: number, plan: Doc<"plans">): number {
  if (plan.monthlyCredits <= 0) return 0;
  return Math.floor((2 * unused * plan.price + plan.monthlyCredits) / (2 * plan.monthlyCredits));
}

export type ChangeKind = "start" | "upgrade" | "downgrade" | "renewal" | "none";

export type ChangePreview = {
  kind: ChangeKind;
  /** Minor units to pay now (0 for downgrades and no change). */
  amount: number;
  creditsGranted: number;
  creditsConverted: number;
  /** null: when the payment succeeds; a time: the period end the change waits for. */
  takesEffectAt: number | null;
};

/** What choosing `planName` would do for the user now (no writes; a query can call it). */
export async function previewChange(
  ctx: QueryCtx,
  userId: Id<"users">,
  planName: string,
): Promise<ChangePreview & { subscription: Subscription | null; plan: Doc<"plans"> }> {
  const plan = await requirePlan(ctx, planName);
  const sub = await currentSubscription(ctx, userId);
  const none = { amount: 0, creditsGranted: 0, creditsConverted: 0 };
  /** Paying the plan's full price now for its credits (a start, or an overdue period). */
  const fullPrice = (kind: "start" | "renewal") => ({
    kind,
    amount: plan.price,
    creditsGranted: plan.monthlyCredits,
    creditsConverted: 0,
    takesEffectAt: null,
    subscription: sub,
    plan,
  });
  if (!isLive(sub)) {
    return fullPrice("start");
  }
  const current = await requirePlan(ctx, sub.plan);
  if (plan.monthlyCredits > current.monthlyCredits) {
    const lot = await currentPlanLot(ctx, sub);
    const unused = lot === null ? 0 : availableOf(lot);
    return {
      kind: "upgrade",
      amount: Math.max(1, plan.price - unusedCreditValue(unused, current)),
      creditsGranted: plan.monthlyCredits,
      creditsConverted: unused,
      takesEffectAt: null,
      subscription: sub,
      plan,
    };
  }
  if (sub.status === "past_due" && plan.name === sub.plan) {
    return fullPrice("renewal");
  }
  if (plan.name === sub.plan && sub.pendingPlan === undefined) {
    return { kind: "none", ...none, takesEffectAt: null, subscription: sub, plan };
  }
  return {
    kind: plan.name === sub.plan ? "none" : "downgrade",
    ...none,
    creditsGranted: plan.monthlyCredits,
    takesEffectAt: changeTakesEffectAt(sub),
    subscription: sub,
    plan,
  };
}

/**
 * What a checkout of `planName` pays for: starting a subscription (none live: an `incomplete`
 * one is made or reused), an upgrade, or the unpaid period of a `past_due` subscription. Choosing
 * the current or a cheaper plan of a live subscription is INVALID_ARGUMENT (see changePlan).
 */
export async function prepareCheckout(
  ctx: MutationCtx,
  user: Doc<"users">,
  planName: string,
  currency: string,
) {
  const preview = await previewChange(ctx, user._id, planName);
  const { plan } = preview;
  if (preview.kind === "none" || preview.kind === "downgrade") {
    throw appError(
      "INVALID_ARGUMENT",
      `planName: you are on the ${preview.subscription?.plan} plan; switch to a plan with fewer credits with subscriptions.changePlan.`,
    );
  }
  let subscriptionId: Id<"subscriptions">;
  if (preview.kind === "start") {
    const sub = preview.subscription;
    if (sub !== null && sub.status === "incomplete") {
      subscriptionId = sub._id;
      await ctx.db.patch("subscriptions", sub._id, { plan: plan.name, currency });
    } else {
      subscriptionId = await ctx.db.insert("subscriptions", {
        userId: user._id,
        plan: plan.name,
        status: "incomplete",
        periodIndex: 0,
        cancelAtPeriodEnd: false,
        currency,
        createdAt: Date.now(),
      });
    }
  } else {
    subscriptionId = preview.subscription!._id;
  }
  return {
    subscriptionId,
    purpose: preview.kind,
    amount: preview.amount,
    credits: plan.monthlyCredits,
    periodIndex: preview.kind === "renewal" ? preview.subscription!.periodIndex : undefined,
    generation: preview.kind === "renewal" ? (preview.subscription!.generation ?? 0) : undefined,
    planName: plan.name,
  };
}

/** When a change at the period end takes effect: after the next period if it is paid already. */
function changeTakesEffectAt(sub: Subscription): number | null {
  if (sub.anchor === undefined || sub.currentPeriodEnd === undefined) return null;
  return paidRenewal(sub) === null
    ? sub.currentPeriodEnd
    : periodEnd(sub.anchor, sub.periodIndex + 1);
}

// ---------------------------------------------------------------------------------------------
// Periods

/**
 * Makes period `index` (from `anchor`) the current one of an active subscription on `planName`,
 * grants its plan lot (once) and schedules its renewal and its end.
 */
async function beginPeriod(
  ctx: MutationCtx,
  sub: Subscription,
  planName: PlanName,
  anchor: number,
  index: number,
  grant: { credits: number; paymentId?: Id<"payments">; source: "period" | "upgrade" },
  pendingPlan?: PlanName,
) {
  const start = periodStart(anchor, index);
  const end = periodEnd(anchor, index);
  const reanchored = sub.anchor !== anchor || index === 0;
  const generation = reanchored ? (sub.generation ?? 0) + 1 : (sub.generation ?? 0);
  await ctx.db.patch("subscriptions", sub._id, {
    status: "active",
    plan: planName,
    anchor,
    generation,
    periodIndex: index,
    currentPeriodStart: start,
    currentPeriodEnd: end,
    pendingPlan: pendingPlan === planName ? undefined : pendingPlan,
    renewal: undefined,
    renewalDueAt: end - RENEWAL_LEAD_MS,
    graceEndsAt: undefined,
  });
  await grantPeriodLot(ctx, { ...sub, generation }, index, end, grant);
  await schedulePeriod(ctx, sub._id, end);
  await changePlan(ctx, sub.userId, planName);
}

async function grantPeriodLot(
  ctx: MutationCtx,
  sub: Subscription,
  index: number,
  end: number,
  grant: { credits: number; paymentId?: Id<"payments">; source: "period" | "upgrade" },
) {
  if (end <= Date.now()) {
    // The period is over already (its close ran that late): a paid one's credits still arrive,
    // as a month of their own; a comp's are moot.
    const payment = grant.paymentId && (await ctx.db.get("payments", grant.paymentId));
    if (payment) {
      await grantPurchaseLot(ctx, payment, `Period ${index + 1}, paid but over before it began`);
    }
    return;
  }
  await grantLot(ctx, sub.userId, {
    kind: "period",
    source: grant.source,
    credits: grant.credits,
    expiresAt: end,
    sourceKey: periodLotKey(sub._id, sub.generation ?? 0, index),
    paymentId: grant.paymentId,
    subscriptionId: sub._id,
    note: `Subscription period ${index + 1}`,
  });
}

async function schedulePeriod(ctx: MutationCtx, subscriptionId: Id<"subscriptions">, end: number) {
  const renewAt = Math.max(Date.now(), end - RENEWAL_LEAD_MS);
  await ctx.scheduler.runAt(renewAt, internal.subscriptions.createRenewal, {
    subscriptionId,
    periodEnd: end,
  });
  await ctx.scheduler.runAt(end, internal.subscriptions.closePeriod, {
    subscriptionId,
    periodEnd: end,
  });
}

/** Converts (voids, with a ledger row saying why) the unused credits of the current plan lot. */
async function convertPlanLot(ctx: MutationCtx, sub: Subscription, why: string) {
  const lot = await currentPlanLot(ctx, sub);
  if (lot === null || availableOf(lot) === 0) return 0;
  const unused = availableOf(lot);
  await changeLot(ctx, lot, { remaining: lot.remaining - unused }, { kind: "convert", note: why });
  return unused;
}

/**
 * The period that ends at `end` is over (scheduled at `end`; keyed by it: a stale or repeated
 * run does nothing). Cancels, renews with the paid renewal, or goes past_due.
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
  // Expire the ending plan lot first: its unused credits roll over (model/lots.ts).
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
    await ctx.db.patch("subscriptions", sub._id, {
      status: "canceled",
      canceledAt: now,
      renewal: undefined,
      renewalDueAt: undefined,
    });
    return true;
  }
  const plan = nextPeriodPlan(sub);
  const graceEndsAt = end + GRACE_MS;
  await ctx.db.patch("subscriptions", sub._id, {
    status: "past_due",
    plan,
    pendingPlan: undefined,
    periodIndex: next,
    currentPeriodStart: end,
    currentPeriodEnd: periodEnd(sub.anchor!, next),
    graceEndsAt,
    // Unpaid: nothing to renew until the grace is paid (which sets it again).
    renewalDueAt: undefined,
  });
  await ctx.scheduler.runAt(graceEndsAt, internal.subscriptions.endGrace, {
    subscriptionId,
    graceEndsAt,
  });
  await changePlan(ctx, sub.userId, plan);
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
  await ctx.db.patch("subscriptions", sub._id, {
    status: "canceled",
    canceledAt: now,
    renewal: undefined,
  });
  return true;
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
    // Taken off the index now; createRenewal makes the payment (or does nothing if moot).
    await ctx.db.patch("subscriptions", sub._id, { renewalDueAt: undefined });
    if (sub.status === "active" && sub.currentPeriodEnd !== undefined) {
      await ctx.scheduler.runAfter(0, internal.subscriptions.createRenewal, {
        subscriptionId: sub._id,
        periodEnd: sub.currentPeriodEnd,
      });
    }
  }
  const handled = ends.length + graces.length + renewals.length;
  return {
    handled,
    more: [ends, graces, renewals].some((batch) => batch.length === SWEEP_BATCH_SIZE),
  };
}

// ---------------------------------------------------------------------------------------------
// Renewals

/**
 * Records the renewal payment of the period after the one ending at `end` (keyed by `end`):
 * nothing when the subscription moved on, cancels at the period end, or already has one.
 */
export async function startRenewal(
  ctx: MutationCtx,
  subscriptionId: Id<"subscriptions">,
  end: number,
  currency: string,
) {
  const sub = await ctx.db.get("subscriptions", subscriptionId);
  const next = (sub?.periodIndex ?? 0) + 1;
  if (
    sub === null ||
    Date.now() < end - RENEWAL_LEAD_MS ||
    sub.status !== "active" ||
    sub.currentPeriodEnd !== end ||
    sub.cancelAtPeriodEnd ||
    (sub.renewal !== undefined &&
      sub.renewal.periodIndex === next &&
      sub.renewal.status !== "failed")
  ) {
    return null;
  }
  const plan = await requirePlan(ctx, nextPeriodPlan(sub));
  const user = (await ctx.db.get("users", sub.userId))!;
  const paymentId = await ctx.db.insert("payments", {
    userId: sub.userId,
    trueLayerTxnId: "",
    amount: plan.price,
    creditsAdded: 0,
    creditsPurchased: plan.monthlyCredits,
    timestamp: Date.now(),
    status: "pending",
    planName: plan.name,
    currency,
    subscriptionId,
    purpose: "renewal",
    periodIndex: next,
    generation: sub.generation ?? 0,
  });
  await ctx.db.patch("subscriptions", subscriptionId, {
    renewalDueAt: undefined,
    renewal: {
      paymentId,
      periodIndex: next,
      dueAt: end,
      amount: plan.price,
      currency,
      status: "pending",
      payUrl: null,
      planName: plan.name,
    },
  });
  return { paymentId, amount: plan.price, planName: plan.name, email: user.email };
}

/** TrueLayer accepted the renewal payment: its hosted payment page link, for the front end. */
export async function attachRenewalUrl(
  ctx: MutationCtx,
  paymentId: Id<"payments">,
  payUrl: string | null,
) {
  const payment = await ctx.db.get("payments", paymentId);
  const sub = payment?.subscriptionId
    ? await ctx.db.get("subscriptions", payment.subscriptionId)
    : null;
  if (sub?.renewal?.paymentId === paymentId) {
    await ctx.db.patch("subscriptions", sub._id, { renewal: { ...sub.renewal, payUrl } });
  }
}

/** A renewal payment failed (or could not be created): shown on the subscription. */
export async function markRenewalFailed(ctx: MutationCtx, payment: Doc<"payments">) {
  const sub = payment.subscriptionId
    ? await ctx.db.get("subscriptions", payment.subscriptionId)
    : null;
  if (sub?.renewal?.paymentId === payment._id && sub.renewal.status === "pending") {
    await ctx.db.patch("subscriptions", sub._id, { renewal: { ...sub.renewal, status: "failed" } });
  }
}

// ---------------------------------------------------------------------------------------------
// Payments succeeding

/**
 * A subscription payment succeeded (first time; model/payments.ts checked): applies it to the
 * subscription it was made for, if that still makes sense; otherwise (the subscription was
 * canceled meanwhile, or the payment no longer matches it) it starts a new subscription from
 * now: the customer paid for a plan and gets it, never a silent renewal of an old one.
 */
export async function applySubscriptionPayment(
  ctx: MutationCtx,
  payment: Doc<"payments">,
): Promise<string> {
  const now = Date.now();
  const sub = payment.subscriptionId
    ? await ctx.db.get("subscriptions", payment.subscriptionId)
    : null;
  const grant = { credits: payment.creditsPurchased, paymentId: payment._id };
  if (sub !== null && payment.purpose === "start" && sub.status === "incomplete") {
    await beginPeriod(ctx, sub, payment.planName, now, 0, { ...grant, source: "period" });
    return "subscription started";
  }
  if (sub !== null && isLive(sub) && payment.purpose === "upgrade") {
    await creditPaidRenewal(ctx, sub, `the upgrade to ${payment.planName}`);
    await convertPlanLot(ctx, sub, `Upgrade to ${payment.planName}: unused credits converted`);
    await beginPeriod(ctx, sub, payment.planName, now, 0, { ...grant, source: "upgrade" });
    return "subscription upgraded";
  }
  // A renewal pays for one period of one anchoring: never for a later period that happens to
  // have the same index after an upgrade or comp set the anchor again.
  const samePeriods =
    payment.generation === undefined || payment.generation === (sub?.generation ?? 0);
  if (
    sub?.status === "active" &&
    payment.purpose === "renewal" &&
    samePeriods &&
    sub.renewal?.paymentId === payment._id &&
    payment.periodIndex === sub.periodIndex + 1
  ) {
    await ctx.db.patch("subscriptions", sub._id, { renewal: { ...sub.renewal, status: "paid" } });
    return "renewal paid; the next period starts at the period end";
  }
  if (
    sub?.status === "past_due" &&
    payment.purpose === "renewal" &&
    samePeriods &&
    payment.periodIndex === sub.periodIndex
  ) {
    // Paid within the grace (the scheduled renewal, or one made through createCheckout): the
    // period keeps its anchor dates and gets its lot now.
    await ctx.db.patch("subscriptions", sub._id, {
      status: "active",
      graceEndsAt: undefined,
      renewal: undefined,
      renewalDueAt: sub.currentPeriodEnd! - RENEWAL_LEAD_MS,
    });
    await grantPeriodLot(ctx, sub, sub.periodIndex, sub.currentPeriodEnd!, {
      ...grant,
      source: "period",
    });
    await schedulePeriod(ctx, sub._id, sub.currentPeriodEnd!);
    return "renewal paid within the grace";
  }
  // Nothing to apply it to any more: a new subscription from now (or, if the user already has a
  // live one, these credits as a lot of their own for the month).
  const live = await currentSubscription(ctx, payment.userId);
  if (isLive(live)) {
    await grantPurchaseLot(
      ctx,
      payment,
      `Payment for the ${payment.planName} plan that no longer matched the subscription`,
    );
    return "credited as a one-month lot (the subscription had moved on)";
  }
  const subscriptionId = await ctx.db.insert("subscriptions", {
    userId: payment.userId,
    plan: payment.planName,
    status: "incomplete",
    periodIndex: 0,
    cancelAtPeriodEnd: false,
    createdAt: now,
  });
  await ctx.db.patch("payments", payment._id, { subscriptionId });
  const fresh = (await ctx.db.get("subscriptions", subscriptionId))!;
  await beginPeriod(ctx, fresh, payment.planName, now, 0, { ...grant, source: "period" });
  return "a new subscription started (the old one had ended)";
}

/**
 * The anchor is about to be set again (upgrade, comp) while the next period is already paid:
 * that period will never begin, so its payment's credits become a lot of their own now.
 */
async function creditPaidRenewal(ctx: MutationCtx, sub: Subscription, why: string) {
  const renewal = paidRenewal(sub);
  if (renewal === null) return;
  const payment = (await ctx.db.get("payments", renewal.paymentId))!;
  await grantPurchaseLot(
    ctx,
    payment,
    `Renewal for the ${payment.planName} plan, paid for a period replaced by ${why}`,
  );
}

/**
 * A refund executed on a paid renewal whose period has not begun: there is no lot to take
 * credits back from, the period will grant less (`creditsLeft`); refunded in full, the renewal
 * no longer counts as paid. Returns whether the payment was such a renewal.
 */
export async function refundAwaitedRenewal(
  ctx: MutationCtx,
  payment: Doc<"payments">,
  due: number,
) {
  const sub =
    payment.purpose === "renewal" && payment.subscriptionId !== undefined
      ? await ctx.db.get("subscriptions", payment.subscriptionId)
      : null;
  const renewal = sub === null ? null : paidRenewal(sub);
  if (sub === null || renewal?.paymentId !== payment._id) {
    return false;
  }
  if (creditsLeft(payment) - due <= 0) {
    await ctx.db.patch("subscriptions", sub._id, { renewal: { ...renewal, status: "failed" } });
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Changes by the user and by operators

export async function scheduleDowngrade(ctx: MutationCtx, user: Doc<"users">, planName: string) {
  const preview = await previewChange(ctx, user._id, planName);
  const sub = preview.subscription;
  if (!isLive(sub)) {
    throw appError("INVALID_TRANSITION", "There is no active subscription to change.");
  }
  if (preview.kind === "upgrade" || preview.kind === "renewal") {
    throw appError(
      "INVALID_ARGUMENT",
      `planName: ${planName} has more credits; upgrade with payments.createCheckout (it is charged now).`,
    );
  }
  const pendingPlan = planName === sub.plan ? undefined : preview.plan.name;
  await ctx.db.patch("subscriptions", sub._id, { pendingPlan });
  await supersedeRenewal(ctx, sub);
  return { pendingPlan: pendingPlan ?? null, takesEffectAt: changeTakesEffectAt(sub) };
}

/** The pending renewal was priced for the old choice: it is dropped and made anew if due. */
async function supersedeRenewal(ctx: MutationCtx, sub: Subscription) {
  if (await dropPendingRenewal(ctx, sub, "the subscription changed")) {
    if (sub.currentPeriodEnd !== undefined) {
      await ctx.scheduler.runAfter(0, internal.subscriptions.createRenewal, {
        subscriptionId: sub._id,
        periodEnd: sub.currentPeriodEnd,
      });
    }
  }
}

/** A pending renewal no longer fits the subscription: it and its payment are failed. */
async function dropPendingRenewal(ctx: MutationCtx, sub: Subscription, why: string) {
  if (sub.renewal?.status !== "pending") {
    return false;
  }
  await ctx.db.patch("subscriptions", sub._id, { renewal: { ...sub.renewal, status: "failed" } });
  await ctx.db.patch("payments", sub.renewal.paymentId, {
    status: "failed",
    failureReason: `superseded: ${why}`,
  });
  return true;
}

export async function setCancelAtPeriodEnd(ctx: MutationCtx, user: Doc<"users">, cancel: boolean) {
  const sub = await currentSubscription(ctx, user._id);
  if (!isLive(sub)) {
    throw appError("INVALID_TRANSITION", "There is no active subscription.");
  }
  // Canceling: no renewal falls due (resume sets it again).
  await ctx.db.patch("subscriptions", sub._id, {
    cancelAtPeriodEnd: cancel,
    ...(cancel ? { renewalDueAt: undefined } : {}),
  });
  if (cancel) {
    await dropPendingRenewal(ctx, sub, "the subscription cancels at the period end");
  }
  if (!cancel && sub.currentPeriodEnd !== undefined && sub.renewal?.status !== "paid") {
    const dueAt = sub.currentPeriodEnd - RENEWAL_LEAD_MS;
    await ctx.db.patch("subscriptions", sub._id, { renewalDueAt: dueAt });
    await ctx.scheduler.runAt(Math.max(Date.now(), dueAt), internal.subscriptions.createRenewal, {
      subscriptionId: sub._id,
      periodEnd: sub.currentPeriodEnd,
    });
  }
  return {
    cancelAtPeriodEnd: cancel,
    currentPeriodEnd: sub.currentPeriodEnd ?? null,
    endsAt: cancel ? changeTakesEffectAt(sub) : null,
  };
}

/**
 * Operators (`users:updateUserPlan`): the plan changes now without payment (a comp or support
 * fix): the current plan lot's unused credits are converted and a new period starts now with
 * the new plan's lot; a user without a live subscription gets one.
 */
export async function compPlan(ctx: MutationCtx, userId: Id<"users">, planName: string) {
  const plan = await requirePlan(ctx, planName);
  let sub = await currentSubscription(ctx, userId);
  const user = await ctx.db.get("users", userId);
  if (user === null) {
    throw appError("NOT_FOUND", "User not found.");
  }
  if (user.plan === plan.name && (!isLive(sub) || sub.plan === plan.name)) {
    return { changed: false, plan: plan.name }; // already on it: nothing to comp
  }
  if (sub?.status === "incomplete") {
    // A checkout in progress: the comp completes that subscription (one per user); its payment,
    // if it still succeeds, no longer matches it and credits a lot of its own.
  } else if (!isLive(sub)) {
    const id = await ctx.db.insert("subscriptions", {
      userId,
      plan: plan.name,
      status: "incomplete",
      periodIndex: 0,
      cancelAtPeriodEnd: false,
      createdAt: Date.now(),
    });
    sub = (await ctx.db.get("subscriptions", id))!;
  } else {
    await creditPaidRenewal(ctx, sub, `a plan set by an operator`);
    await convertPlanLot(
      ctx,
      sub,
      `Plan set to ${plan.name} by an operator: unused credits converted`,
    );
  }
  await beginPeriod(ctx, sub, plan.name, Date.now(), 0, {
    credits: plan.monthlyCredits,
    source: "period",
  });
  return { changed: true, plan: plan.name };
}
