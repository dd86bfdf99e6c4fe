import type { Change } from "convex-helpers/server/triggers";
import type { DataModel, Doc } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { DAY_MS } from "./calendar";
import { availableOf, type Lot } from "./lots";
import { sendNotice } from "./notices";
import { findPlan } from "./plans";
import { endsAtPeriodEnd, isLive } from "./subscriptionState";

/**
 * When each notice goes (docs/notices.md). The hooks run as database triggers on the tables
 * whose changes mean a notice (registered in lib/triggers.ts), so no write path has to call
 * them, and they read nothing unless a notice is due. The credits-expiring notice comes from a
 * daily sweep over the lots instead: nothing changes when credits get close to their expiry.
 */

const periodKey = (sub: Doc<"subscriptions">, periodIndex: number) =>
  `period:${sub._id}:${sub.generation ?? 0}:${periodIndex}`;

/**
 * - renewal coming: a manual renewal gets its pay link (TrueLayer created the payment), or a
 *   renewal on the mandate is recorded for its first charge (not a charge tried again after
 *   TrueLayer could not create it, nor a dunning retry); keyed by its period, payment and
 *   method, so a renewal made anew (a downgrade re-prices it, a cancel undone) is announced
 *   again with its amount and link, and so is a fallback to the hosted page;
 * - renewal failed: the period ended unpaid (past_due), with the grace end and the pay link if
 *   the renewal's payment can still be paid, or the next dunning charge on the mandate; once
 *   per period. A pay link made in the grace (the mandate ended) says the grace end too;
 * - subscription canceled: a subscription that had begun ends, once.
 */
export async function onSubscriptionNotice(
  ctx: MutationCtx,
  { oldDoc, newDoc }: Change<DataModel, "subscriptions">,
) {
  if (newDoc === null) return;
  const renewal = newDoc.renewal;
  const before = oldDoc?.renewal;
  if (renewal?.status === "pending") {
    const method = renewal.method ?? "manual";
    const announce =
      method === "mandate"
        ? (before?.paymentId !== renewal.paymentId || before.method !== "mandate") &&
          renewal.attempts === undefined &&
          renewal.refusals === undefined
        : renewal.payUrl !== null && before?.payUrl !== renewal.payUrl;
    if (announce) {
      const key = `${periodKey(newDoc, renewal.periodIndex)}:${renewal.paymentId}:${method}`;
      await sendNotice(ctx, newDoc.userId, key, {
        kind: "renewal_coming",
        plan: renewal.planName ?? newDoc.plan,
        amount: renewal.amount,
        currency: renewal.currency,
        dueAt: renewal.dueAt,
        payUrl: method === "mandate" ? null : renewal.payUrl,
        ...(newDoc.status === "past_due" ? { graceEndsAt: newDoc.graceEndsAt! } : {}),
        ...(renewal.fallbackReason !== undefined ? { mandateFallback: true } : {}),
      });
    }
  }
  if (oldDoc?.status === "active" && newDoc.status === "past_due") {
    const unpaid = renewal?.periodIndex === newDoc.periodIndex ? renewal : undefined;
    await sendNotice(ctx, newDoc.userId, periodKey(newDoc, newDoc.periodIndex), {
      kind: "renewal_failed",
      plan: newDoc.plan,
      graceEndsAt: newDoc.graceEndsAt!,
      payUrl: unpaid?.status === "pending" ? unpaid.payUrl : null,
      retryAt: newDoc.renewalDueAt ?? null,
    });
  }
  if (
    newDoc.status === "canceled" &&
    (oldDoc?.status === "active" || oldDoc?.status === "past_due")
  ) {
    await sendNotice(ctx, newDoc.userId, `subscription:${newDoc._id}`, {
      kind: "subscription_canceled",
      plan: newDoc.plan,
      canceledAt: newDoc.canceledAt ?? Date.now(),
      unpaid: oldDoc.status === "past_due",
    });
  }
}

const isSucceeded = (status: Doc<"payments">["status"] | undefined) =>
  status === "executed" || status === "settled";

/**
 * Renewal paid: a renewal payment's first success, one receipt per payment (each charge gets
 * its receipt, also a late success of an earlier attempt). Other payments: nothing read.
 */
export async function onPaymentNotice(
  ctx: MutationCtx,
  { oldDoc, newDoc }: Change<DataModel, "payments">,
) {
  if (newDoc?.purpose !== "renewal" || !isSucceeded(newDoc.status) || isSucceeded(oldDoc?.status)) {
    return;
  }
  await sendNotice(ctx, newDoc.userId, `payment:${newDoc._id}`, {
    kind: "renewal_paid",
    plan: newDoc.planName,
    amount: newDoc.amount,
    currency: newDoc.currency,
    paidAt: newDoc.succeededAt ?? Date.now(),
    reference: newDoc._id,
  });
}

/**
 * Auto-renewal set up: a mandate becomes `authorized`. Revoked: an authorised mandate ends
 * (`revoked` by the user or their bank, `failed`). Keyed by the mandate: once each.
 */
export async function onMandateNotice(
  ctx: MutationCtx,
  { oldDoc, newDoc }: Change<DataModel, "mandates">,
) {
  if (newDoc === null || oldDoc?.status === newDoc.status) return;
  const key = `mandate:${newDoc._id}`;
  if (newDoc.status === "authorized") {
    await sendNotice(ctx, newDoc.userId, key, {
      kind: "auto_renewal_set_up",
      maxAmount: newDoc.maxAmount,
      currency: newDoc.currency,
    });
  } else if (
    oldDoc?.status === "authorized" &&
    (newDoc.status === "revoked" || newDoc.status === "failed")
  ) {
    await sendNotice(ctx, newDoc.userId, key, {
      kind: "auto_renewal_revoked",
      failed: newDoc.status === "failed",
    });
  }
}

/** Credits expiring within this long are announced (the daily sweep looks this far ahead). */
export const EXPIRY_NOTICE_WINDOW_MS = 3 * DAY_MS;
/**
 * A lot's expiring credits are announced when they are at least this share of the monthly
 * credits of the user's plan (10%: 10 of a starter's 100), so a handful of leftover credits
 * does not send an email.
 */
export const EXPIRY_NOTICE_SHARE = 0.1;
/** Lots looked at per sweep step (each: up to ~5 reads and a notice). */
export const EXPIRY_NOTICE_BATCH = 50;

/**
 * One step of the credits-expiring sweep: the next active lots (in expiry order) expiring
 * within `EXPIRY_NOTICE_WINDOW_MS`, after the last lot an earlier step looked at (the cursor in
 * `noticeSweeps`), so each lot is looked at once, when it enters the window. A lot granted
 * already inside the window, behind the cursor, is not announced (it was just granted).
 */
export async function sweepExpiringCredits(ctx: MutationCtx, now: number) {
  const cursor = await ctx.db
    .query("noticeSweeps")
    .withIndex("by_name", (q) => q.eq("name", "credits_expiring"))
    .unique();
  const from = cursor !== null && cursor.expiresAt > now ? cursor : null;
  const lots: Lot[] = [];
  if (from !== null) {
    // The rest of the lots expiring at the cursor's moment (period ends come in bursts).
    lots.push(
      ...(await ctx.db
        .query("creditLots")
        .withIndex("by_status_and_expiresAt", (q) =>
          q
            .eq("status", "active")
            .eq("expiresAt", from.expiresAt)
            .gt("_creationTime", from.creationTime),
        )
        .take(EXPIRY_NOTICE_BATCH)),
    );
  }
  if (lots.length < EXPIRY_NOTICE_BATCH) {
    lots.push(
      ...(await ctx.db
        .query("creditLots")
        .withIndex("by_status_and_expiresAt", (q) =>
          q
            .eq("status", "active")
            .gt("expiresAt", from?.expiresAt ?? now)
            .lte("expiresAt", now + EXPIRY_NOTICE_WINDOW_MS),
        )
        .take(EXPIRY_NOTICE_BATCH - lots.length)),
    );
  }
  let noticed = 0;
  for (const lot of lots) {
    if (await noticeExpiringLot(ctx, lot)) noticed++;
  }
  const last = lots.at(-1);
  if (last !== undefined) {
    const position = { expiresAt: last.expiresAt!, creationTime: last._creationTime };
    if (cursor === null) {
      await ctx.db.insert("noticeSweeps", { name: "credits_expiring", ...position });
    } else {
      await ctx.db.patch("noticeSweeps", cursor._id, position);
    }
  }
  return { looked: lots.length, noticed, more: lots.length === EXPIRY_NOTICE_BATCH };
}

/** Announces the lot's expiring credits if they are worth it (see `EXPIRY_NOTICE_SHARE`). */
async function noticeExpiringLot(ctx: MutationCtx, lot: Lot): Promise<boolean> {
  const credits = availableOf(lot);
  if (credits <= 0 || lot.expiresAt === undefined) return false;
  if ((lot.source === "period" || lot.source === "upgrade") && lot.subscriptionId !== undefined) {
    // The plan lot of a subscription that goes on rolls its unused credits over (up to a plan).
    const sub = await ctx.db.get("subscriptions", lot.subscriptionId);
    if (sub !== null && isLive(sub) && !endsAtPeriodEnd(sub)) return false;
  }
  const user = await ctx.db.get("users", lot.userId);
  if (user === null) return false;
  const plan = await findPlan(ctx, user.plan);
  if (credits < Math.max(1, Math.ceil((plan?.monthlyCredits ?? 0) * EXPIRY_NOTICE_SHARE))) {
    return false;
  }
  const id = await sendNotice(ctx, lot.userId, `lot:${lot._id}`, {
    kind: "credits_expiring",
    credits,
    expiresAt: lot.expiresAt,
  });
  return id !== null;
}
