import type { Doc, Id } from "../_generated/dataModel";
import type { QueryCtx } from "../_generated/server";
import { configuredMandateType } from "../lib/trueLayerMandates";
import { addMonthsUtc } from "./calendar";
import { authorizedMandate } from "./mandates";

/**
 * Renewals charged on the user's TrueLayer mandate ("bank on file"; docs/subscriptions.md):
 * whether a renewal is charged on one, and each charge's idempotency key. The renewal itself is
 * made in subscriptionRenewals.ts; its payment is created by `subscriptions.createRenewal` with
 * `payment_method: { type: "mandate", mandate_id }` and needs nothing from the user; its outcome
 * comes through the ordinary payment webhooks and the quote rule.
 */

/**
 * A renewal TrueLayer refused to create this often (a revocation we have not heard of, a
 * constraint it sees differently, or an outage of over an hour) is made on the hosted page.
 */
export const MANDATE_CREATION_TRIES = 3;
/** The user's payments this month a periodic-limit check looks through (renewals are monthly). */
const PERIODIC_LIMIT_LOOKBACK = 50;

/** Renewals are charged on mandates only where `TRUELAYER_MANDATE_TYPE` names a mandate type. */
export function mandateRenewalsEnabled(): boolean {
  return configuredMandateType() !== null;
}

/** How a renewal of `amount` is to be paid: on the mandate, or manually (and why, if one exists). */
export type RenewalMethodChoice =
  { method: "mandate"; mandate: Doc<"mandates"> } | { method: "manual"; fallbackReason?: string };

/**
 * A renewal of `amount` in `currency` is charged on the user's authorised mandate when mandate
 * renewals are enabled and the charge fits the mandate's constraints (its per-payment maximum,
 * and its periodic limit for the consent month together with that month's other charges on
 * it); otherwise it is made on the hosted page (`fallbackReason` says why, when a mandate
 * exists). `creationRefusals`: TrueLayer refused to create this renewal that often: at
 * `MANDATE_CREATION_TRIES` the page instead.
 */
export async function chooseRenewalMethod(
  ctx: QueryCtx,
  userId: Id<"users">,
  amount: number,
  currency: string,
  now: number,
  creationRefusals: number,
): Promise<RenewalMethodChoice> {
  if (!mandateRenewalsEnabled()) return { method: "manual" };
  const mandate = await authorizedMandate(ctx, userId);
  if (mandate === null) return { method: "manual" };
  const manual = (fallbackReason: string) => ({ method: "manual" as const, fallbackReason });
  if (mandate.currency !== currency) {
    return manual(`the mandate is in ${mandate.currency}, the renewal in ${currency}`);
  }
  if (amount > mandate.maxAmount) {
    return manual(`${amount} is over the mandate's maximum of ${mandate.maxAmount} per payment`);
  }
  const charged = await chargedThisMonth(ctx, mandate, now);
  if (charged + amount > mandate.periodicLimit) {
    return manual(
      `${amount} with ${charged} charged this month is over the mandate's monthly limit of ${mandate.periodicLimit}`,
    );
  }
  if (creationRefusals >= MANDATE_CREATION_TRIES) {
    return manual(`TrueLayer refused to create it ${creationRefusals} times`);
  }
  return { method: "mandate", mandate };
}

/**
 * The start of the mandate's current month: its periodic limit is aligned on the consent
 * (`period_alignment: "consent"`, convex/truelayer.ts), so months run from when it was authorised.
 */
export function consentMonthStart(authorizedAt: number, now: number): number {
  let months = Math.max(
    0,
    (new Date(now).getUTCFullYear() - new Date(authorizedAt).getUTCFullYear()) * 12 +
      new Date(now).getUTCMonth() -
      new Date(authorizedAt).getUTCMonth(),
  );
  while (months > 0 && addMonthsUtc(authorizedAt, months) > now) months -= 1;
  return addMonthsUtc(authorizedAt, months);
}

/** Minor units charged on `mandate` (pending or succeeded) in its current consent month. */
async function chargedThisMonth(ctx: QueryCtx, mandate: Doc<"mandates">, now: number) {
  const monthStart = consentMonthStart(mandate.authorizedAt ?? mandate.createdAt, now);
  const recent = await ctx.db
    .query("payments")
    .withIndex("by_userId", (q) => q.eq("userId", mandate.userId).gte("timestamp", monthStart))
    .take(PERIODIC_LIMIT_LOOKBACK);
  return recent
    .filter((p) => p.mandateId === mandate._id && p.status !== "failed")
    .reduce((total, p) => total + p.amount, 0);
}

/**
 * The idempotency key of a renewal's charge on a mandate: one per (subscription, anchoring,
 * period, charge attempt). A retried call (the workpool's, or a payment recorded again after
 * TrueLayer could not create it) sends the same key, so TrueLayer charges at most once per
 * attempt; each dunning retry is a new attempt with a key of its own.
 */
export function mandateChargeKey(payment: Doc<"payments">): string {
  return [
    "renewal",
    payment.subscriptionId,
    payment.generation ?? 0,
    payment.periodIndex,
    payment.chargeAttempt ?? 0,
  ].join(":");
}
