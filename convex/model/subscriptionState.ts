import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { configuredMandateType } from "../lib/trueLayerMandates";
import type { PlanName } from "../lib/validators";
import { DAY_MS, addMonthsUtc } from "./calendar";
import { DEFAULT_PLAN } from "./plans";
import { changePlan } from "./users";

/**
 * A subscription's state and the one place it is written. Every status change goes through
 * `transitionSubscription`, checked against `TRANSITIONS`; every other write through
 * `updateSubscription`. Both derive `renewalDueAt` (when the next renewal payment is to be
 * created) from the subscription itself (`renewalDueAtOf`) and keep the user's plan equal to
 * the plan of their live subscription (the sign-up plan once none is live). The lifecycle:
 *
 *   incomplete ──(first payment, comp)──> active ──(period end, renewal unpaid)──> past_due
 *       │                                 ▲  │ ▲                                   │  │
 *       │                                 │  │ └─────(renewal paid in grace, comp)──┘  │
 *       │             (new period: renewal,  │                                         │
 *       │              upgrade, comp)────────┘──(period end canceling, user deleted)──> canceled
 *       └──(user deleted)──> canceled                  (grace over, user deleted) ─────┘
 *
 * A canceled subscription is final: a later payment starts a new one.
 */

export type Subscription = Doc<"subscriptions">;
export type SubscriptionStatus = Subscription["status"];

export const TRANSITIONS: Record<SubscriptionStatus, readonly SubscriptionStatus[]> = {
  incomplete: ["active", "canceled"],
  // active → active: a new period (renewed, upgraded, comped).
  active: ["active", "past_due", "canceled"],
  past_due: ["active", "canceled"],
  canceled: [],
};

export const RENEWAL_LEAD_MS = 3 * DAY_MS;
/**
 * With Direct Debit mandates (`TRUELAYER_MANDATE_TYPE=direct_debit`) renewals are made 7 days
 * ahead: a Bacs collection takes 3 working days, which a weekend and a bank holiday stretch to 6.
 */
export const DIRECT_DEBIT_RENEWAL_LEAD_MS = 7 * DAY_MS;
export const GRACE_MS = 7 * DAY_MS;
/**
 * Dunning: after the payer's bank refused a renewal charged on a mandate, it is charged again
 * this long after the period end, once per refusal so far (1st, 2nd, 3rd retry), all inside the
 * grace; after the last one is refused the grace runs out and the subscription is canceled.
 */
export const DUNNING_RETRY_OFFSETS_MS = [1 * DAY_MS, 3 * DAY_MS, 5 * DAY_MS] as const;
/** A renewal TrueLayer could not create is tried again after 10 min, doubling, at most 6 h. */
export const RENEWAL_RETRY_BASE_MS = 10 * 60 * 1000;
export const RENEWAL_RETRY_MAX_MS = 6 * 60 * 60 * 1000;

/** Fields written by hand; `renewalDueAt` is derived, `userId` and `status` are not patched. */
type SubscriptionPatch = Partial<
  Omit<Subscription, "_id" | "_creationTime" | "userId" | "status" | "renewalDueAt">
>;

export function periodStart(anchor: number, index: number): number {
  return addMonthsUtc(anchor, index);
}

export function periodEnd(anchor: number, index: number): number {
  return addMonthsUtc(anchor, index + 1);
}

export type LiveSubscription = Subscription & { status: "active" | "past_due" };
export const isLive = (sub: Subscription | null): sub is LiveSubscription =>
  sub !== null && (sub.status === "active" || sub.status === "past_due");

/** The renewal of the next period, if it is already paid: that period will begin, whatever else. */
export function paidRenewal(sub: Subscription) {
  const renewal = sub.renewal;
  return renewal?.status === "paid" && renewal.periodIndex === sub.periodIndex + 1 ? renewal : null;
}

/** The plan of the next period: the paid renewal's, else a scheduled downgrade's, else the current. */
export function nextPeriodPlan(sub: Subscription): PlanName {
  return paidRenewal(sub)?.planName ?? sub.pendingPlan ?? sub.plan;
}

/** Whether the subscription ends at the current period's end (canceling, and nothing paid beyond). */
export function endsAtPeriodEnd(sub: Subscription): boolean {
  return sub.cancelAtPeriodEnd && paidRenewal(sub) === null;
}

/**
 * How long before a period ends its renewal is made: the one place that decides it. A payment
 * on a VRP mandate (and one on the hosted page) executes at once: 3 days; a Direct Debit
 * deployment makes every renewal 7 days ahead so the collection lands before the period ends.
 */
export function renewalLeadMs(): number {
  return configuredMandateType() === "direct_debit"
    ? DIRECT_DEBIT_RENEWAL_LEAD_MS
    : RENEWAL_LEAD_MS;
}

/**
 * When the renewal of the next period is to be created: `renewalLeadMs()` before an active
 * period ends, unless the subscription cancels or that renewal exists already (pending or paid).
 * A renewal TrueLayer could not create is due again at its `retryAt` while that is before the
 * period end. A past_due subscription whose renewal on a mandate the bank refused is due for its
 * next dunning charge (`dunningRetryAt`).
 */
export function renewalDueAtOf(sub: Omit<Subscription, "_id" | "_creationTime">) {
  if (sub.status === "past_due") {
    return dunningRetryAt(sub);
  }
  if (sub.status !== "active" || sub.cancelAtPeriodEnd || sub.currentPeriodEnd === undefined) {
    return undefined;
  }
  const renewal = sub.renewal;
  if (renewal === undefined || renewal.periodIndex !== sub.periodIndex + 1) {
    return sub.currentPeriodEnd - renewalLeadMs();
  }
  if (
    renewal.status === "failed" &&
    renewal.retryAt !== undefined &&
    renewal.retryAt < sub.currentPeriodEnd
  ) {
    return renewal.retryAt;
  }
  return undefined;
}

/**
 * The next dunning charge of a past_due subscription: its grace's renewal was charged on a
 * mandate and refused `refusals` times, so retry number `refusals` falls due that long after the
 * period end (keyed by the refusals: a stale run finds a later count or a pending charge), later
 * if TrueLayer could not create the last try (`retryAt`), never at or after the grace end, and
 * not once the user chose to cancel.
 */
export function dunningRetryAt(sub: Omit<Subscription, "_id" | "_creationTime">) {
  const renewal = sub.renewal;
  const refusals = renewal?.refusals ?? 0;
  if (
    renewal?.method !== "mandate" ||
    renewal.status !== "failed" ||
    renewal.periodIndex !== sub.periodIndex ||
    refusals === 0 ||
    refusals > DUNNING_RETRY_OFFSETS_MS.length ||
    sub.cancelAtPeriodEnd ||
    sub.currentPeriodStart === undefined ||
    sub.graceEndsAt === undefined
  ) {
    return undefined;
  }
  const due = Math.max(
    sub.currentPeriodStart + DUNNING_RETRY_OFFSETS_MS[refusals - 1],
    renewal.retryAt ?? 0,
  );
  return due < sub.graceEndsAt ? due : undefined;
}

/** The plan a user is on: their live subscription's, else the sign-up plan. */
export function userPlanOf(sub: Subscription | null): PlanName {
  return isLive(sub) ? sub.plan : DEFAULT_PLAN;
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

/** Writes `patch` (no status change) with the derived fields; returns the subscription as it is now. */
export async function updateSubscription(
  ctx: MutationCtx,
  sub: Subscription,
  patch: SubscriptionPatch,
): Promise<Subscription> {
  return await write(ctx, sub, sub.status, patch);
}

/**
 * The one status change: `to` must be allowed from the subscription's status (a bug otherwise:
 * the whole transaction is refused). Returns the subscription as it is now.
 */
export async function transitionSubscription(
  ctx: MutationCtx,
  sub: Subscription,
  to: SubscriptionStatus,
  patch: SubscriptionPatch = {},
): Promise<Subscription> {
  if (!TRANSITIONS[sub.status].includes(to)) {
    throw new Error(`Subscription ${sub._id}: ${sub.status} → ${to} is not a transition.`);
  }
  return await write(ctx, sub, to, to === "canceled" ? { ...patch, ...ENDED } : patch);
}

/** A canceled subscription has nothing pending. */
const ENDED = { pendingPlan: undefined, graceEndsAt: undefined } as const;

async function write(
  ctx: MutationCtx,
  sub: Subscription,
  status: SubscriptionStatus,
  patch: SubscriptionPatch,
): Promise<Subscription> {
  const next: Subscription = { ...sub, ...patch, status };
  next.renewalDueAt = renewalDueAtOf(next);
  await ctx.db.patch("subscriptions", sub._id, {
    ...patch,
    status,
    renewalDueAt: next.renewalDueAt,
  });
  // Status, plan or period changes: the user row says the plan they are on now.
  if (userPlanOf(next) !== userPlanOf(sub) || status !== sub.status || "periodIndex" in patch) {
    await changePlan(ctx, sub.userId, userPlanOf(next));
  }
  return next;
}

/** A new `incomplete` subscription for the user (one per user at a time; the caller checks). */
export async function insertSubscription(
  ctx: MutationCtx,
  userId: Id<"users">,
  plan: PlanName,
  currency?: string,
): Promise<Subscription> {
  const id = await ctx.db.insert("subscriptions", {
    userId,
    plan,
    status: "incomplete",
    periodIndex: 0,
    cancelAtPeriodEnd: false,
    currency,
    createdAt: Date.now(),
  });
  return (await ctx.db.get("subscriptions", id))!;
}
