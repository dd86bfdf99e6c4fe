import type { Doc } from "../_generated/dataModel";
import type { PlanName } from "../lib/validators";

/**
 * What a subscription's next period will be, from the subscription alone (no reads): shared by
 * the period close (model/subscriptions.ts) and the rollover of an ending plan lot
 * (model/lots.ts), which must agree on it.
 */

type Subscription = Doc<"subscriptions">;

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
