import type { Doc } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import type { PlanCounts, PlanName } from "../lib/validators";
import { emptyPlanCounts } from "./metricsBuckets";
import { FOLD_BATCH, PENDING_READ_LIMIT, readPendingDeltas } from "./deferredCounters";
import { findPlan } from "./plans";

/**
 * The subscription gauges (active subscriptions per plan, monthly recurring revenue per
 * currency) as deferred counters. A subscription change never writes a shared row: it inserts a
 * `subscriptionTotalDeltas` row (new documents never conflict), so 10^5 period ends at the same
 * second, and the checkouts and cancels running beside them, touch no common document. The fold
 * (`metrics:foldSubscriptionTotals`, every minute and again at once while a backlog remains)
 * adds a batch of deltas to the one `subscriptionTotals` row and deletes them, in one
 * transaction; `metrics.overview` adds the deltas not folded yet to that row. Totals + deltas
 * equal the live subscriptions in every snapshot, since the fold moves a delta from one to the
 * other atomically.
 *
 * One totals row, not shards: only the fold writes it, once per batch, and two folds conflict
 * anyway on the deltas they both read, so shards would spread nothing and cost the overview a
 * read each.
 */

export { FOLD_BATCH, PENDING_READ_LIMIT };
/** The totals row, and room for the 16 rows of the sharded gauges the first fold merges. */
const MAX_TOTAL_ROWS = 16;

export type Gauges = { active: PlanCounts; mrr: Record<string, number> };

/** What a subscription counts for: active ones, by plan and currency; others nothing. */
const countedAs = (sub: Doc<"subscriptions"> | null) =>
  sub?.status === "active" ? { plan: sub.plan, currency: sub.currency ?? "GBP" } : null;

/**
 * The trigger's half: the change from what the subscription counted for to what it counts for
 * now, as one delta row. Reads nothing unless the plan or currency counted changes (then the
 * plans whose prices move, by index).
 */
export async function recordSubscriptionTotalsChange(
  ctx: MutationCtx,
  oldDoc: Doc<"subscriptions"> | null,
  newDoc: Doc<"subscriptions"> | null,
): Promise<void> {
  const before = countedAs(oldDoc);
  const after = countedAs(newDoc);
  if (before?.plan === after?.plan && before?.currency === after?.currency) return;
  const prices = new Map<PlanName, number>();
  const delta: Gauges = { active: emptyPlanCounts(), mrr: {} };
  for (const [side, sign] of [
    [before, -1],
    [after, 1],
  ] as const) {
    if (side === null) continue;
    if (!prices.has(side.plan)) {
      prices.set(side.plan, (await findPlan(ctx, side.plan))?.price ?? 0);
    }
    delta.active[side.plan] += sign;
    delta.mrr[side.currency] = (delta.mrr[side.currency] ?? 0) + sign * prices.get(side.plan)!;
  }
  await ctx.db.insert("subscriptionTotalDeltas", delta);
}

/** Rows of gauges (totals and deltas alike) added up. */
export function sumGauges(rows: Gauges[]): Gauges {
  const sum: Gauges = { active: emptyPlanCounts(), mrr: {} };
  for (const row of rows) {
    for (const plan of Object.keys(sum.active) as PlanName[]) sum.active[plan] += row.active[plan];
    for (const [currency, amount] of Object.entries(row.mrr)) {
      sum.mrr[currency] = (sum.mrr[currency] ?? 0) + amount;
    }
  }
  return sum;
}

/**
 * One fold: the oldest FOLD_BATCH deltas added to the totals row (written once) and deleted.
 * Also merges the rows of the sharded gauges, if any are left, into one. A duplicate or
 * concurrent run conflicts on the deltas it reads and, retried, finds them gone.
 */
export async function foldSubscriptionTotalsBatch(
  ctx: MutationCtx,
): Promise<{ folded: number; more: boolean }> {
  const deltas = await ctx.db.query("subscriptionTotalDeltas").take(FOLD_BATCH);
  const rows = await ctx.db.query("subscriptionTotals").take(MAX_TOTAL_ROWS);
  if (deltas.length === 0 && rows.length <= 1) {
    return { folded: 0, more: false };
  }
  const totals = sumGauges([...rows, ...deltas]);
  const [kept, ...merged] = rows;
  if (kept === undefined) {
    await ctx.db.insert("subscriptionTotals", totals);
  } else {
    await ctx.db.replace("subscriptionTotals", kept._id, totals);
  }
  for (const row of merged) await ctx.db.delete("subscriptionTotals", row._id);
  for (const delta of deltas) await ctx.db.delete("subscriptionTotalDeltas", delta._id);
  return { folded: deltas.length, more: deltas.length === FOLD_BATCH };
}

/**
 * The gauges now: the totals plus the oldest unfolded deltas (`readPendingDeltas`: with the
 * totals row, no more reads than the 16 sharded rows it replaced).
 */
export async function readSubscriptionGauges(
  ctx: QueryCtx,
): Promise<Gauges & { pending: number; exact: boolean }> {
  const rows = await ctx.db.query("subscriptionTotals").take(MAX_TOTAL_ROWS);
  const { rows: deltas, ...pending } = await readPendingDeltas(
    ctx.db.query("subscriptionTotalDeltas"),
  );
  return { ...sumGauges([...rows, ...deltas]), ...pending };
}
