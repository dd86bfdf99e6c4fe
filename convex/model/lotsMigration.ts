import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { applyCreditChange } from "./ledger";
import { MAX_ACTIVE_LOTS, availableOf, lotKeys, type Lot } from "./lots";
import { creditsLeft } from "./paymentCredits";
import { paidRenewal } from "./subscriptionState";

/**
 * Rows from before lots, converted once (convex/migrations.ts runs this per user): afterwards
 * every credit of a balance is in a lot, every hold has its allocations, and a refund of any
 * payment reaches what is left of its credits. The money code has no second path for the old
 * shapes: it refuses them (`unconvertedRows`).
 *
 * Per user, without changing the balance:
 * - lots the old code adopted lazily (`legacy:<userId>…`, inserted without a ledger row) get
 *   the missing row, so their rows add up to them, and an ordinary key;
 * - available credits outside lots go to succeeded payments without any lot, newest first, each
 *   up to what it still buys, as never-expiring `purchase` lots carrying the payment (a refund
 *   reaches them); the rest, with the credits of holds without allocations, go to one
 *   never-expiring `adjustment` lot (`lotKeys.beforeLots`), and those jobs get their allocations
 *   on it.
 * A lot's arrival is a pair of ledger rows: one naming the lot (so its rows add up to it), one
 * taking the same amount off the balance without a lot (so the balance's rows still add up to
 * it). A held job's pair is `reserve` rows naming the job.
 */

/** Old adopted lots' keys: `legacy:<userId>` and `legacy:<userId>:<ms>`. */
const ADOPTED_KEY = (userId: Id<"users">) => `legacy:${userId}`;
/** A user's jobs still holding credits read at most (unfinished jobs are few per user). */
const MAX_HELD_JOBS = 500;
/** A user's payments read (newest first) when looking for those whose credits lack a lot. */
const MAX_PAYMENTS = 200;

const MIGRATION = "migrations:moveBalancesIntoLots";

/** The error for an old row the money code meets: it must be converted first, never guessed at. */
export function unconvertedRows(what: string): Error {
  return new Error(`${what} is from before credit lots: run ${MIGRATION} (docs/credits.md).`);
}

export type UserConversion = {
  adoptedLots: number;
  paymentLots: number;
  balanceLot: number;
  heldJobs: number;
};

/** Converts one user's rows; a user already converted changes nothing (all zeros). */
export async function moveBalanceIntoLots(
  ctx: MutationCtx,
  userId: Id<"users">,
): Promise<UserConversion> {
  const done: UserConversion = { adoptedLots: 0, paymentLots: 0, balanceLot: 0, heldJobs: 0 };
  done.adoptedLots = await recordAdoptedLots(ctx, userId);
  const active = await ctx.db
    .query("creditLots")
    .withIndex("by_userId_and_status", (q) => q.eq("userId", userId).eq("status", "active"))
    .take(MAX_ACTIVE_LOTS);
  if (active.length === MAX_ACTIVE_LOTS) {
    throw new Error(`User ${userId} has ${MAX_ACTIVE_LOTS}+ active lots: convert by hand.`);
  }
  const user = (await ctx.db.get("users", userId))!;
  let uncovered = user.credits - active.reduce((total, lot) => total + availableOf(lot), 0);
  if (uncovered < 0) {
    throw new Error(`User ${userId}: the active lots hold more than the balance (a bug).`);
  }
  const heldJobs = (
    await ctx.db
      .query("jobs")
      .withIndex("by_userId_and_creditStatus", (q) =>
        q.eq("userId", userId).eq("creditStatus", "held"),
      )
      .take(MAX_HELD_JOBS)
  ).filter((job) => job.allocations === undefined);
  if (uncovered > 0) {
    for (const payment of await paymentsWithoutLots(ctx, userId)) {
      const credits = Math.min(uncovered, creditsLeft(payment));
      await insertConvertedLot(ctx, userId, {
        source: "purchase",
        sourceKey: lotKeys.purchase(payment._id),
        paymentId: payment._id,
        available: credits,
        note: `Credits of payment ${payment._id} from before lots, moved into a lot`,
      });
      done.paymentLots++;
      uncovered -= credits;
      if (uncovered === 0) break;
    }
  }
  const held = heldJobs.reduce((total, job) => total + job.creditsUsed, 0);
  if (uncovered + held === 0) {
    return done;
  }
  const lot = await insertConvertedLot(ctx, userId, {
    source: "adjustment",
    sourceKey: lotKeys.beforeLots(userId),
    available: uncovered,
    held,
    note: "Balance from before lots, moved into a lot",
  });
  done.balanceLot = 1;
  for (const job of heldJobs) {
    await ctx.db.patch("jobs", job._id, {
      allocations: [{ lotId: lot._id, credits: job.creditsUsed }],
    });
    const entry = { kind: "reserve" as const, jobId: job._id, delta: 0 };
    const note = "Hold from before lots, moved onto a lot";
    await applyCreditChange(ctx, userId, {
      ...entry,
      reservedDelta: job.creditsUsed,
      lotId: lot._id,
      note,
    });
    await applyCreditChange(ctx, userId, { ...entry, reservedDelta: -job.creditsUsed, note });
    done.heldJobs++;
  }
  return done;
}

/**
 * Lots the old code adopted (no ledger row for what it put in them: their `granted`, as only
 * adoption raised it) get that row, paired, and the key of an ordinary adjustment lot.
 */
async function recordAdoptedLots(ctx: MutationCtx, userId: Id<"users">): Promise<number> {
  const key = ADOPTED_KEY(userId);
  const adopted = await ctx.db
    .query("creditLots")
    .withIndex("by_sourceKey", (q) => q.gte("sourceKey", key).lt("sourceKey", `${key};`))
    .take(MAX_ACTIVE_LOTS);
  const ours = adopted.filter(
    (lot) => lot.sourceKey === key || lot.sourceKey.startsWith(`${key}:`),
  );
  for (const lot of ours) {
    await ctx.db.patch("creditLots", lot._id, { sourceKey: `adjustment:${lot._id}` });
    await addPairedRows(ctx, userId, lot._id, lot.granted, 0, "Credits adopted into a lot");
  }
  return ours.length;
}

/** Succeeded payments of the user, newest first, that have credits left and no lot at all. */
async function paymentsWithoutLots(ctx: MutationCtx, userId: Id<"users">) {
  const payments = await ctx.db
    .query("payments")
    .withIndex("by_userId", (q) => q.eq("userId", userId))
    .order("desc")
    .take(MAX_PAYMENTS);
  const found: Doc<"payments">[] = [];
  for (const payment of payments) {
    const succeeded = payment.status === "executed" || payment.status === "settled";
    if (!succeeded || creditsLeft(payment) === 0) continue;
    const lot = await ctx.db
      .query("creditLots")
      .withIndex("by_paymentId", (q) => q.eq("paymentId", payment._id))
      .first();
    if (lot !== null || (await awaitsItsPeriod(ctx, payment))) continue;
    found.push(payment);
  }
  return found;
}

/** A paid renewal whose period has not begun: no lot by design (its period grants it). */
async function awaitsItsPeriod(ctx: MutationCtx, payment: Doc<"payments">) {
  if (payment.purpose !== "renewal" || payment.subscriptionId === undefined) return false;
  const sub = await ctx.db.get("subscriptions", payment.subscriptionId);
  return sub !== null && paidRenewal(sub)?.paymentId === payment._id;
}

async function insertConvertedLot(
  ctx: MutationCtx,
  userId: Id<"users">,
  lot: {
    source: "purchase" | "adjustment";
    sourceKey: string;
    paymentId?: Id<"payments">;
    available: number;
    held?: number;
    note: string;
  },
): Promise<Lot> {
  const held = lot.held ?? 0;
  const credits = lot.available + held;
  const taken = await ctx.db
    .query("creditLots")
    .withIndex("by_sourceKey", (q) => q.eq("sourceKey", lot.sourceKey))
    .first();
  const lotId = await ctx.db.insert("creditLots", {
    userId,
    source: lot.source,
    sourceKey: lot.sourceKey,
    granted: credits,
    remaining: credits,
    held,
    status: "active",
    closed: false,
    paymentId: lot.paymentId,
    createdAt: Date.now(),
  });
  if (taken !== null) {
    await ctx.db.patch("creditLots", lotId, { sourceKey: `${lot.source}:${lotId}` });
  }
  // The held part's pairs are the jobs' own (`reserve` rows naming each job).
  await addPairedRows(ctx, userId, lotId, lot.available, 0, lot.note, lot.paymentId);
  return (await ctx.db.get("creditLots", lotId))!;
}

/** A row naming the lot and one without a lot, opposite: the balance does not move. */
async function addPairedRows(
  ctx: MutationCtx,
  userId: Id<"users">,
  lotId: Id<"creditLots">,
  delta: number,
  reservedDelta: number,
  note: string,
  paymentId?: Id<"payments">,
) {
  if (delta === 0 && reservedDelta === 0) return;
  const entry = { kind: "adjustment" as const, note, paymentId };
  await applyCreditChange(ctx, userId, { ...entry, delta, reservedDelta, lotId });
  await applyCreditChange(ctx, userId, {
    ...entry,
    delta: -delta,
    reservedDelta: -reservedDelta,
  });
}
