import { internal } from "../_generated/api";
import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import type { LotSource } from "../lib/validators";
import { applyCreditChange, type CreditChange } from "./ledger";
import { DAY_MS, dayStart } from "./calendar";

/**
 * Credit lots: every credit in a balance belongs to a lot, which knows its source, when it
 * expires and how much of it is held by unfinished jobs. See docs/credits.md for the rules; in
 * short:
 *
 * - A lot's `remaining` credits are available except those `held` by jobs; per lot
 *   0 <= voidOnRelease <= held <= remaining <= granted, checked on every change.
 * - `changeLot` is the one place a lot changes, and it writes the user's cached balance through
 *   `applyCreditChange` with the difference, so `users.credits` = Σ (remaining − held) over
 *   active lots and `users.reservedCredits` = Σ held, exactly, in the same transaction.
 * - Spending order (`spendingOrder`): soonest-expiring first, never-expiring last; ties:
 *   promotional (welcome, adjustment, returned) before paid, then oldest.
 * - Expiry never takes held credits: at `expiresAt` a lot loses `remaining − held` and becomes
 *   `expired`; a hold released later from an expired (or voided) lot comes back as a `returned`
 *   lot expiring 7 days later (one per user, UTC day and payment, so live lots stay few).
 * - It knows nothing of billing: a lot may carry the payment it came from (lots derived from it
 *   carry it too, so a refund reaches them), and other domains plug in as hooks (`lotHooks`).
 * - Holds, consumption and release of jobs' credits: model/lotHolds.ts.
 */

/** Credits of a hold released after its lot expired stay usable this long (counted from the end of that UTC day). */
export const RETURNED_LOT_TTL_MS = 7 * DAY_MS;
/** Active lots of one user read at most; they stay few (see above). */
export const MAX_ACTIVE_LOTS = 100;
/**
 * Lots per expiry sweep transaction: each expiry also refreshes its user's next-expiry cache and
 * may roll credits over, so 80 keep a batch under 25% of every Convex limit (measured in bench/).
 */
export const EXPIRE_BATCH_SIZE = 80;

/** The last valid JavaScript date (ms): an expiry past it cannot be scheduled. */
const MAX_DATE_MS = 8.64e15;

export type Lot = Doc<"creditLots">;
/** What a ledger row says besides the amounts (changeLot computes those). */
export type LotEntry = Omit<CreditChange, "delta" | "reservedDelta" | "lotId">;

/** Every lot's source key, in one place: one lot per grant, so a replay never grants twice. */
export const lotKeys = {
  welcome: (userId: Id<"users">) => `welcome:${userId}`,
  /** A payment's credits as a lot of their own (a purchase, or a payment that moved on). */
  purchase: (paymentId: Id<"payments">) => `payment:${paymentId}`,
  /** A subscription period's plan lot, per (subscription, anchoring, period). */
  period: (subscriptionId: Id<"subscriptions">, generation: number, index: number) =>
    `period:${subscriptionId}:${generation}:${index}`,
  rollover: (lotId: Id<"creditLots">) => `rollover:${lotId}`,
  /** Released holds of the day, per payment they came from (none: `-`). */
  returned: (userId: Id<"users">, day: number, paymentId?: Id<"payments">) =>
    paymentId === undefined
      ? `returned:${userId}:${day}`
      : `returned:${userId}:${day}:${paymentId}`,
  reversal: (refundId: Id<"refunds">) => `reversal:${refundId}`,
  /** A balance from before lots, moved into a lot by the migration (model/lotsMigration.ts). */
  beforeLots: (userId: Id<"users">) => `before-lots:${userId}`,
};

/**
 * Hooks other domains register (lib/triggers.ts), so the credit core knows nothing of billing:
 * - `expiring`: a lot is about to expire; a hook may move its unused credits elsewhere first
 *   (subscriptions roll a period's credits over) and returns the lot after that, or null.
 * - `voidMark`: held credits a refund marked left their hold, voided or consumed (refunds).
 */
export type ExpiringHook = (ctx: MutationCtx, lot: Lot) => Promise<Lot | null>;
export type VoidMarkHook = (
  ctx: MutationCtx,
  lot: Lot,
  credits: number,
  outcome: "voided" | "consumed",
) => Promise<void>;
const hooks: { expiring: ExpiringHook[]; voidMark: VoidMarkHook[] } = {
  expiring: [],
  voidMark: [],
};
export const lotHooks = {
  onExpiring(hook: ExpiringHook) {
    hooks.expiring.push(hook);
  },
  onVoidMark(hook: VoidMarkHook) {
    hooks.voidMark.push(hook);
  },
};
export async function runVoidMarkHooks(
  ctx: MutationCtx,
  lot: Lot,
  credits: number,
  outcome: "voided" | "consumed",
) {
  for (const hook of hooks.voidMark) {
    await hook(ctx, lot, credits, outcome);
  }
}

const PAID_SOURCES: readonly LotSource[] = ["purchase", "period", "rollover", "upgrade"];

/** Credits of the lot that can be spent now. */
export function availableOf(lot: Pick<Lot, "status" | "remaining" | "held">): number {
  return lot.status === "active" ? lot.remaining - lot.held : 0;
}

/** Soonest-expiring first, never-expiring last; then promotional before paid; then oldest. */
export function spendingOrder(a: Lot, b: Lot): number {
  const expiry = (lot: Lot) => lot.expiresAt ?? Number.POSITIVE_INFINITY;
  if (expiry(a) !== expiry(b)) {
    return expiry(a) < expiry(b) ? -1 : 1;
  }
  const paid = (lot: Lot) => (PAID_SOURCES.includes(lot.source) ? 1 : 0);
  if (paid(a) !== paid(b)) {
    return paid(a) - paid(b);
  }
  return a.createdAt - b.createdAt || a._creationTime - b._creationTime;
}

function checkBounds(lot: Lot): void {
  const voidOnRelease = lot.voidOnRelease ?? 0;
  const ok =
    [lot.granted, lot.remaining, lot.held, voidOnRelease].every(Number.isSafeInteger) &&
    0 <= voidOnRelease &&
    voidOnRelease <= lot.held &&
    lot.held <= lot.remaining &&
    lot.remaining <= lot.granted &&
    (lot.status === "active" || lot.remaining === lot.held);
  if (!ok) {
    // A bug, never data: refuse the whole transaction.
    throw new Error(`Credit lot ${lot._id} would break its bounds: ${JSON.stringify(lot)}`);
  }
}

/**
 * The one place a lot changes: applies `patch`, checks the lot's bounds, and writes the change
 * of the user's available and held credits (with a ledger row naming the lot) in the same
 * transaction. An active lot with nothing left becomes `spent`. Returns the lot as it is now.
 */
export async function changeLot(
  ctx: MutationCtx,
  lot: Lot,
  patch: Partial<Pick<Lot, "granted" | "remaining" | "held" | "voidOnRelease" | "status">>,
  entry: LotEntry,
): Promise<Lot> {
  const next: Lot = { ...lot, ...patch };
  if (next.status === "active" && next.remaining === 0) {
    next.status = "spent";
  }
  next.closed = next.status !== "active";
  checkBounds(next);
  await ctx.db.patch("creditLots", lot._id, {
    granted: next.granted,
    remaining: next.remaining,
    held: next.held,
    voidOnRelease: next.voidOnRelease || undefined,
    status: next.status,
    closed: next.closed,
  });
  const delta = availableOf(next) - availableOf(lot);
  const reservedDelta = next.held - lot.held;
  if (delta !== 0 || reservedDelta !== 0) {
    await applyCreditChange(ctx, lot.userId, { ...entry, delta, reservedDelta, lotId: lot._id });
  }
  return next;
}

export async function findLotBySourceKey(ctx: QueryCtx, sourceKey: string): Promise<Lot | null> {
  return await ctx.db
    .query("creditLots")
    .withIndex("by_sourceKey", (q) => q.eq("sourceKey", sourceKey))
    .unique();
}

export type Grant = {
  source: LotSource;
  credits: number;
  /** Absent: never expires. */
  expiresAt?: number;
  /** Unique per grant; absent: the lot's own id (a grant that cannot be replayed). */
  sourceKey?: string;
  paymentId?: Id<"payments">;
  subscriptionId?: Id<"subscriptions">;
} & LotEntry;

/**
 * Grants a new lot (a ledger row of `entry.kind` naming it) and schedules its expiry. A source
 * key already granted grants nothing and returns null: a replayed event can never grant twice.
 */
export async function grantLot(
  ctx: MutationCtx,
  userId: Id<"users">,
  grant: Grant,
): Promise<Lot | null> {
  const { source, credits, expiresAt, sourceKey, paymentId, subscriptionId, ...entry } = grant;
  if (!Number.isSafeInteger(credits) || credits <= 0) {
    throw appError("INVALID_ARGUMENT", "credits must be a positive whole number.");
  }
  if (sourceKey !== undefined && (await findLotBySourceKey(ctx, sourceKey)) !== null) {
    return null;
  }
  const now = Date.now();
  if (
    expiresAt !== undefined &&
    !(Number.isSafeInteger(expiresAt) && expiresAt > now && expiresAt <= MAX_DATE_MS)
  ) {
    throw appError("INVALID_ARGUMENT", "expiresAt must be a valid time in the future (ms).");
  }
  const lotId = await ctx.db.insert("creditLots", {
    userId,
    source,
    sourceKey: sourceKey ?? `pending:${now}`,
    granted: credits,
    remaining: 0,
    held: 0,
    expiresAt,
    status: "active",
    closed: false,
    paymentId,
    subscriptionId,
    createdAt: now,
  });
  if (sourceKey === undefined) {
    await ctx.db.patch("creditLots", lotId, { sourceKey: `${source}:${lotId}` });
  }
  const empty = (await ctx.db.get("creditLots", lotId))!;
  const lot = await changeLot(
    ctx,
    { ...empty, status: "active" },
    { remaining: credits },
    {
      ...entry,
      paymentId,
    },
  );
  if (expiresAt !== undefined) {
    await ctx.scheduler.runAt(expiresAt, internal.credits.expireLot, { lotId, expiresAt });
  }
  await refreshNextExpiry(ctx, userId);
  return lot;
}

/**
 * Credits of a released hold whose lot expired or was voided: they come back in the user's
 * `returned` lot of the day (one per payment they came from, so a refund of that payment still
 * reaches them), which expires 7 days after that day ends.
 */
export async function returnCredits(
  ctx: MutationCtx,
  userId: Id<"users">,
  credits: number,
  now: number,
  entry: LotEntry,
  paymentId?: Id<"payments">,
): Promise<void> {
  const day = dayStart(now);
  const sourceKey = lotKeys.returned(userId, day, paymentId);
  const existing = await findLotBySourceKey(ctx, sourceKey);
  if (existing !== null && existing.status === "active") {
    await changeLot(
      ctx,
      existing,
      { granted: existing.granted + credits, remaining: existing.remaining + credits },
      { ...entry, kind: "return" },
    );
    await refreshNextExpiry(ctx, userId);
    return;
  }
  await grantLot(ctx, userId, {
    ...entry,
    kind: "return",
    source: "returned",
    credits,
    expiresAt: day + DAY_MS + RETURNED_LOT_TTL_MS,
    sourceKey: existing === null ? sourceKey : undefined,
    paymentId,
  });
}

export function isOverdue(lot: Lot, now: number): boolean {
  return lot.status === "active" && lot.expiresAt !== undefined && lot.expiresAt <= now;
}

/**
 * Expires an active lot whose `expiresAt` has come: it loses its unheld credits (an `expire`
 * row) and keeps the held ones for their jobs. Anything else (not due, already expired, spent,
 * voided) changes nothing. Returns the lot as it is now.
 */
export async function expireLot(ctx: MutationCtx, lot: Lot, now: number): Promise<Lot> {
  if (!isOverdue(lot, now)) {
    return lot;
  }
  let before = lot;
  for (const hook of hooks.expiring) {
    before = (await hook(ctx, before)) ?? before;
  }
  const expired = await changeLot(
    ctx,
    before,
    { remaining: before.held, status: "expired" },
    { kind: "expire", note: `Lot expired at ${new Date(lot.expiresAt!).toISOString()}` },
  );
  await refreshNextExpiry(ctx, lot.userId);
  return expired;
}

/** One batch of active lots past their expiry (the sweep behind the scheduled expiries). */
export async function expireDueLots(
  ctx: MutationCtx,
  now: number,
): Promise<{ expired: number; more: boolean }> {
  const due = await ctx.db
    .query("creditLots")
    .withIndex("by_status_and_expiresAt", (q) =>
      q.eq("status", "active").gte("expiresAt", 0).lte("expiresAt", now),
    )
    .take(EXPIRE_BATCH_SIZE);
  for (const lot of due) {
    await expireLot(ctx, lot, now);
  }
  return { expired: due.length, more: due.length === EXPIRE_BATCH_SIZE };
}

/** Caches the user's next expiry of available credits (`getCredits`'s `expiring`). */
export async function refreshNextExpiry(ctx: MutationCtx, userId: Id<"users">): Promise<void> {
  const lots = await ctx.db
    .query("creditLots")
    .withIndex("by_userId_and_status", (q) => q.eq("userId", userId).eq("status", "active"))
    .take(MAX_ACTIVE_LOTS);
  let next: { credits: number; at: number } | undefined;
  for (const lot of lots) {
    const credits = availableOf(lot);
    if (lot.expiresAt === undefined || credits === 0) continue;
    if (next === undefined || lot.expiresAt < next.at) {
      next = { credits, at: lot.expiresAt };
    } else if (lot.expiresAt === next.at) {
      next = { credits: next.credits + credits, at: next.at };
    }
  }
  const user = await ctx.db.get("users", userId);
  if (user !== null && JSON.stringify(user.nextExpiry) !== JSON.stringify(next)) {
    await ctx.db.patch("users", userId, { nextExpiry: next });
  }
}

/** Converts (voids, with a `convert` ledger row saying why) up to `max` available credits of a lot. */
export async function convertAvailable(ctx: MutationCtx, lot: Lot, max: number, note: string) {
  const credits = Math.min(max, availableOf(lot));
  if (credits > 0) {
    await changeLot(ctx, lot, { remaining: lot.remaining - credits }, { kind: "convert", note });
  }
  return credits;
}
