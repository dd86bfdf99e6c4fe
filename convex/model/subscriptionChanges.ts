import { internal } from "../_generated/api";
import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import { convertAvailable } from "./lots";
import { requirePlan } from "./plans";
import { beginPeriod } from "./subscriptionPeriods";
import { changeTakesEffectAt, currentPlanLot, previewChange } from "./subscriptionQuotes";
import { creditPaidRenewal, dropPendingRenewal } from "./subscriptionRenewals";
import {
  currentSubscription,
  insertSubscription,
  isLive,
  transitionSubscription,
  updateSubscription,
  type Subscription,
} from "./subscriptionState";

/**
 * Changes a customer or an operator makes: downgrades and cancellation take effect at the
 * period end (after the next period if that is paid already); a comp changes the plan now; a
 * deleted user's subscription ends at once.
 */

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
  if (pendingPlan !== sub.pendingPlan) {
    // The pending renewal was priced for the old choice: dropped, and made anew if due.
    const changed = await updateSubscription(ctx, sub, { pendingPlan });
    await supersedeRenewal(ctx, changed, "the subscription changed");
  }
  return { pendingPlan: pendingPlan ?? null, takesEffectAt: changeTakesEffectAt(sub) };
}

async function supersedeRenewal(ctx: MutationCtx, sub: Subscription, why: string) {
  const next = await dropPendingRenewal(ctx, sub, why);
  if (next !== sub && next.renewalDueAt !== undefined) {
    await ctx.scheduler.runAfter(0, internal.subscriptions.startRenewal, {
      subscriptionId: sub._id,
      periodEnd: sub.currentPeriodEnd!,
    });
  }
}

export async function setCancelAtPeriodEnd(ctx: MutationCtx, user: Doc<"users">, cancel: boolean) {
  const sub = await currentSubscription(ctx, user._id);
  if (!isLive(sub)) {
    throw appError("INVALID_TRANSITION", "There is no active subscription.");
  }
  let next = await updateSubscription(ctx, sub, { cancelAtPeriodEnd: cancel });
  if (cancel) {
    next = await dropPendingRenewal(ctx, next, "the subscription cancels at the period end");
  } else if (next.renewalDueAt !== undefined) {
    // Renewing again: the renewal falls due (now, if its time has passed).
    await ctx.scheduler.runAt(
      Math.max(Date.now(), next.renewalDueAt),
      internal.subscriptions.startRenewal,
      { subscriptionId: sub._id, periodEnd: sub.currentPeriodEnd! },
    );
  }
  return {
    cancelAtPeriodEnd: cancel,
    currentPeriodEnd: sub.currentPeriodEnd ?? null,
    endsAt: cancel ? changeTakesEffectAt(sub) : null,
  };
}

/**
 * Clerk deleted the user: their subscription ends now (no renewal is created or charged any
 * more; a pending one is dropped, a paid one is credited as a lot). Credits stay with the
 * anonymised row, for the books.
 */
export async function cancelForDeletedUser(ctx: MutationCtx, userId: Id<"users">) {
  const sub = await currentSubscription(ctx, userId);
  if (sub === null || sub.status === "canceled") return;
  await creditPaidRenewal(ctx, sub, "the deletion of the account");
  const dropped = await dropPendingRenewal(ctx, sub, "the user was deleted");
  await transitionSubscription(ctx, dropped, "canceled", {
    canceledAt: Date.now(),
    cancelAtPeriodEnd: true,
    cancelReason: "user_deleted",
  });
}

/**
 * Operators (`users:updateUserPlan`): the plan changes now without payment (a comp or support
 * fix): the current plan lot's unused credits are converted and a new period starts now with
 * the new plan's lot; a user without a live subscription gets one. Nothing changes only when the
 * user's subscription is active on that plan already.
 */
export async function compPlan(ctx: MutationCtx, userId: Id<"users">, planName: string) {
  const plan = await requirePlan(ctx, planName);
  const user = await ctx.db.get("users", userId);
  if (user === null) {
    throw appError("NOT_FOUND", "User not found.");
  }
  if (user.deletedAt !== undefined) {
    throw appError("FORBIDDEN", "This account has been deleted.");
  }
  let sub = await currentSubscription(ctx, userId);
  if (sub?.status === "active" && sub.plan === plan.name) {
    return { changed: false, plan: plan.name }; // already on it: nothing to comp
  }
  if (sub?.status === "incomplete") {
    // A checkout in progress: the comp completes that subscription (one per user); its payment,
    // if it still succeeds, no longer matches it and credits what it bought.
  } else if (!isLive(sub)) {
    sub = await insertSubscription(ctx, userId, plan.name, sub?.currency);
  } else {
    await creditPaidRenewal(ctx, sub, `a plan set by an operator`);
    const lot = await currentPlanLot(ctx, sub);
    if (lot !== null) {
      await convertAvailable(
        ctx,
        lot,
        lot.remaining,
        `Plan set to ${plan.name} by an operator: unused credits converted`,
      );
    }
    sub = await dropPendingRenewal(ctx, sub, "a plan set by an operator");
  }
  await beginPeriod(ctx, sub, plan.name, Date.now(), 0, {
    credits: plan.monthlyCredits,
    source: "period",
  });
  return { changed: true, plan: plan.name };
}
