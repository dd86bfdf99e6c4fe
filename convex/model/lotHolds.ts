import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import {
  MAX_ACTIVE_LOTS,
  availableOf,
  changeLot,
  expireLot,
  isOverdue,
  refreshNextExpiry,
  returnCredits,
  runVoidMarkHooks,
  spendingOrder,
  type Lot,
  type LotEntry,
} from "./lots";
import { unconvertedRows } from "./lotsMigration";

/**
 * What jobs and operators do with a user's lots (model/lots.ts has the lots themselves): hold a
 * job's price in spending order, then consume (settle) or release the hold; remove available
 * credits (a negative adjustment).
 */

/**
 * The user's active lots in spending order. Lots past `expiresAt` whose expiry has not run yet
 * expire first (never spend an expired credit). A balance with credits outside its lots (from
 * before lots, not converted yet) is refused: nothing is guessed about it.
 */
export async function spendableLots(ctx: MutationCtx, user: Doc<"users">): Promise<Lot[]> {
  const now = Date.now();
  const lots: Lot[] = [];
  const read = await ctx.db
    .query("creditLots")
    .withIndex("by_userId_and_status", (q) => q.eq("userId", user._id).eq("status", "active"))
    .take(MAX_ACTIVE_LOTS);
  for (const lot of read) {
    lots.push(isOverdue(lot, now) ? await expireLot(ctx, lot, now) : lot);
  }
  const active = lots.filter((lot) => lot.status === "active");
  const covered = active.reduce((total, lot) => total + availableOf(lot), 0);
  const current = (await ctx.db.get("users", user._id))!;
  // Only when every active lot was read can credits be told to be outside them.
  if (read.length < MAX_ACTIVE_LOTS && current.credits > covered) {
    throw unconvertedRows(
      `The balance of user ${user._id} (${current.credits - covered} credits outside lots)`,
    );
  }
  return active.sort(spendingOrder);
}

// ---------------------------------------------------------------------------------------------
// Holds

export type Allocation = { lotId: Id<"creditLots">; credits: number };

/**
 * Holds `credits` from the user's lots in spending order; returns the allocations. Throws
 * INSUFFICIENT_CREDITS (the transaction writes nothing) when the lots do not cover them.
 */
export async function holdFromLots(
  ctx: MutationCtx,
  user: Doc<"users">,
  credits: number,
  entry: LotEntry,
): Promise<Allocation[]> {
  const lots = await spendableLots(ctx, user);
  const available = lots.reduce((total, lot) => total + availableOf(lot), 0);
  if (available < credits) {
    throw appError(
      "INSUFFICIENT_CREDITS",
      `Not enough credits: ${available} available, ${credits} needed.`,
    );
  }
  const allocations: Allocation[] = [];
  let needed = credits;
  for (const lot of lots) {
    const take = Math.min(needed, availableOf(lot));
    if (take === 0) continue;
    await changeLot(ctx, lot, { held: lot.held + take }, entry);
    allocations.push({ lotId: lot._id, credits: take });
    needed -= take;
    if (needed === 0) break;
  }
  await refreshNextExpiry(ctx, user._id);
  return allocations;
}

/** Makes the allocations final: consumed from their lots (expired or not). */
export async function consumeAllocations(
  ctx: MutationCtx,
  allocations: Allocation[],
  entry: LotEntry,
): Promise<void> {
  for (const { lotId, credits } of allocations) {
    const lot = (await ctx.db.get("creditLots", lotId))!;
    const marked = Math.min(credits, lot.voidOnRelease ?? 0);
    const after = await changeLot(
      ctx,
      lot,
      {
        remaining: lot.remaining - credits,
        held: lot.held - credits,
        voidOnRelease: (lot.voidOnRelease ?? 0) - marked,
      },
      entry,
    );
    if (marked > 0) {
      await runVoidMarkHooks(ctx, after, marked, "consumed");
    }
  }
}

/**
 * Gives the allocations back: to their lots while those are active; credits a refund marked
 * are voided (`void` rows); credits of a lot that expired or was voided meanwhile come back as
 * the day's `returned` lot. A lot past its expiry is expired first.
 */
export async function releaseAllocations(
  ctx: MutationCtx,
  userId: Id<"users">,
  allocations: Allocation[],
  entry: LotEntry,
): Promise<void> {
  const now = Date.now();
  for (const { lotId, credits } of allocations) {
    let lot = await expireLot(ctx, (await ctx.db.get("creditLots", lotId))!, now);
    const marked = Math.min(credits, lot.voidOnRelease ?? 0);
    if (marked > 0) {
      lot = await changeLot(
        ctx,
        lot,
        {
          remaining: lot.remaining - marked,
          held: lot.held - marked,
          voidOnRelease: (lot.voidOnRelease ?? 0) - marked,
        },
        {
          ...entry,
          kind: "void",
          paymentId: lot.paymentId,
          note: "Held credits of a refunded payment",
        },
      );
      await runVoidMarkHooks(ctx, lot, marked, "voided");
    }
    const rest = credits - marked;
    if (rest === 0) continue;
    if (lot.status === "active") {
      await changeLot(ctx, lot, { held: lot.held - rest }, entry);
    } else {
      await changeLot(ctx, lot, { remaining: lot.remaining - rest, held: lot.held - rest }, entry);
      await returnCredits(ctx, userId, rest, now, entry, lot.paymentId);
    }
  }
  await refreshNextExpiry(ctx, userId);
}

/** Removes available credits in spending order (a negative adjustment); never below zero. */
export async function removeAvailable(
  ctx: MutationCtx,
  user: Doc<"users">,
  credits: number,
  entry: LotEntry,
): Promise<void> {
  const lots = await spendableLots(ctx, user);
  const available = lots.reduce((total, lot) => total + availableOf(lot), 0);
  if (available < credits) {
    throw appError(
      "INSUFFICIENT_CREDITS",
      `Not enough credits: ${available} available, ${credits} to remove.`,
    );
  }
  let needed = credits;
  for (const lot of lots) {
    const take = Math.min(needed, availableOf(lot));
    if (take === 0) continue;
    await changeLot(ctx, lot, { remaining: lot.remaining - take }, entry);
    needed -= take;
    if (needed === 0) break;
  }
  await refreshNextExpiry(ctx, user._id);
}
