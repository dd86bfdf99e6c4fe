import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import { availableOf, findLotBySourceKey, lotKeys } from "./lots";
import { requirePlan } from "./plans";
import {
  currentSubscription,
  insertSubscription,
  isLive,
  paidRenewal,
  periodEnd,
  updateSubscription,
  type Subscription,
} from "./subscriptionState";

/**
 * Quotes: what choosing a plan costs and buys now (`previewChange`, the checkout's price), and
 * whether a quote still holds when its payment succeeds (`quoteHolds`). A payment records its
 * quote (docs/payments.md, "the quote rule") and is applied exactly as quoted, or, when the
 * subscription moved on, credits what it bought.
 */

/** The current period's plan lot, if it was granted. */
export async function currentPlanLot(ctx: QueryCtx, sub: Subscription) {
  if (sub.anchor === undefined) return null;
  return await findLotBySourceKey(
    ctx,
    lotKeys.period(sub._id, sub.generation ?? 0, sub.periodIndex),
  );
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

/** When a change at the period end takes effect: after the next period if it is paid already. */
export function changeTakesEffectAt(sub: Subscription): number | null {
  if (sub.anchor === undefined || sub.currentPeriodEnd === undefined) return null;
  return paidRenewal(sub) === null
    ? sub.currentPeriodEnd
    : periodEnd(sub.anchor, sub.periodIndex + 1);
}

/** What a checkout of `planName` would do now; a plan the caller cannot buy now is refused. */
async function checkoutPreview(ctx: QueryCtx, user: Doc<"users">, planName: string) {
  const preview = await previewChange(ctx, user._id, planName);
  if (preview.kind === "none" || preview.kind === "downgrade") {
    throw appError(
      "INVALID_ARGUMENT",
      `planName: you are on the ${preview.subscription?.plan} plan; switch to a plan with fewer credits with subscriptions.changePlan.`,
    );
  }
  return { ...preview, kind: preview.kind };
}

/** The quote of `preview` for the subscription it is paid for. */
function quoteOf(
  user: Doc<"users">,
  preview: Awaited<ReturnType<typeof checkoutPreview>>,
  sub: Subscription,
  currency: string,
) {
  const { plan } = preview;
  return {
    userId: user._id,
    subscriptionId: sub._id,
    purpose: preview.kind,
    amount: preview.amount,
    listPrice: plan.price,
    creditsPurchased: plan.monthlyCredits,
    planName: plan.name,
    currency,
    ...(preview.kind === "start"
      ? {}
      : { periodIndex: sub.periodIndex, generation: sub.generation ?? 0 }),
    ...(preview.kind === "upgrade"
      ? { fromPlan: sub.plan, creditsConverted: preview.creditsConverted }
      : {}),
  };
}

/**
 * The quote of a checkout of `planName`: starting a subscription (none live: an `incomplete`
 * one is made or reused), an upgrade (priced on the current period's unused plan credits), or
 * the unpaid period of a `past_due` subscription. Choosing the current or a cheaper plan of a
 * live subscription is INVALID_ARGUMENT (see changePlan).
 */
export async function quoteCheckout(
  ctx: MutationCtx,
  user: Doc<"users">,
  planName: string,
  currency: string,
) {
  const preview = await checkoutPreview(ctx, user, planName);
  let sub = preview.subscription;
  if (preview.kind === "start") {
    sub =
      sub !== null && sub.status === "incomplete"
        ? await updateSubscription(ctx, sub, { plan: preview.plan.name, currency })
        : await insertSubscription(ctx, user._id, preview.plan.name, currency);
  }
  return quoteOf(user, preview, sub!, currency);
}

/**
 * The quote `quoteCheckout` would give now, without writing; null when it would make a new
 * subscription (no earlier checkout can have that quote).
 */
export async function currentCheckoutQuote(
  ctx: QueryCtx,
  user: Doc<"users">,
  planName: string,
  currency: string,
) {
  const preview = await checkoutPreview(ctx, user, planName);
  const sub = preview.subscription;
  if (sub === null || (preview.kind === "start" && sub.status !== "incomplete")) {
    return null;
  }
  return quoteOf(user, preview, sub, currency);
}

/**
 * Whether an upgrade's quote still describes its subscription: live, on the plan it was priced
 * from, in the same anchoring and period (whose plan lot it converts). Upgrades quoted before
 * quotes were recorded (no `generation`) are taken as they are.
 */
export function upgradeQuoteHolds(payment: Doc<"payments">, sub: Subscription | null) {
  if (!isLive(sub)) return false;
  if (payment.generation === undefined) return true;
  return (
    payment.generation === (sub.generation ?? 0) &&
    payment.periodIndex === sub.periodIndex &&
    payment.fromPlan === sub.plan
  );
}
