import { expect } from "vitest";
import type { Doc } from "../../convex/_generated/dataModel";
import type { TestConvex } from "./setup";

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
const availableOf = (lot: Doc<"creditLots">) =>
  lot.status === "active" ? lot.remaining - lot.held : 0;

/**
 * The money invariants, checked over the whole database:
 * - per lot 0 <= voidOnRelease <= held <= remaining <= granted, an inactive lot holds all it has
 *   left, and no source key is granted twice;
 * - the user row's caches are exact: `credits` = Σ ledger deltas = Σ (remaining − held) over the
 *   user's active lots; `reservedCredits` = Σ reservedDelta = Σ held = the held jobs' prices;
 * - each lot's ledger rows add up to it (Σ delta = its available credits, Σ reservedDelta = held),
 *   and its held credits are exactly the allocations of its unfinished jobs;
 * - every job's allocations add up to its price; it has reserve rows of exactly its price and, once
 *   finished, settle rows (done) or release/void/return rows (failed, canceled) that end its hold,
 *   never both, matching its `creditStatus` and status; a settle consumes only what it held;
 * - an executed refund's due credits are reclaimed + pending + outstanding;
 * - each email notice was decided once: one row per (user, kind, key), and a row not sent says why.
 * - the subscription gauges are exact: the folded totals plus every delta not folded yet count
 *   the active subscriptions per plan and their monthly revenue per currency (plan prices).
 */
/**
 * `expect(actual, message).toBe(expected)`, with vitest's expect built only when it fails: the
 * model-based and random-operation tests check the whole database after every step, and a
 * passing `expect` costs far more than the comparison.
 */
function same(actual: unknown, expected: unknown, message?: string) {
  if (!Object.is(actual, expected)) {
    expect(actual, message).toBe(expected);
  }
}

/** Rows grouped by a key (ledger rows by lot, user or job), so each check reads only its own. */
function groupBy<T, K>(rows: T[], key: (row: T) => K | undefined): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const row of rows) {
    const k = key(row);
    if (k === undefined) continue;
    const group = groups.get(k);
    if (group === undefined) groups.set(k, [row]);
    else group.push(row);
  }
  return groups;
}

export async function checkInvariants(t: TestConvex) {
  const { users, jobs, ledger, refunds, lots, notices, ...gauges } = await t.run(async (ctx) => ({
    users: await ctx.db.query("users").collect(),
    jobs: await ctx.db.query("jobs").collect(),
    ledger: await ctx.db.query("ledger").collect(),
    refunds: await ctx.db.query("refunds").collect(),
    lots: await ctx.db.query("creditLots").collect(),
    notices: await ctx.db.query("notices").collect(),
    subscriptions: await ctx.db.query("subscriptions").collect(),
    plans: await ctx.db.query("plans").collect(),
    totals: await ctx.db.query("subscriptionTotals").collect(),
    deltas: await ctx.db.query("subscriptionTotalDeltas").collect(),
  }));
  checkSubscriptionGauges(gauges);
  const ledgerByLot = groupBy(ledger, (row) => row.lotId);
  const ledgerByUser = groupBy(ledger, (row) => row.userId);
  const ledgerByJob = groupBy(ledger, (row) => row.jobId);
  const lotsByUser = groupBy(lots, (lot) => lot.userId);
  const heldJobs = jobs.filter((job) => job.creditStatus === "held");
  const allocatedByLot = groupBy(
    heldJobs.flatMap((job) => job.allocations ?? []),
    (allocation) => allocation.lotId,
  );
  const heldJobsByUser = groupBy(heldJobs, (job) => job.userId);
  const keys = new Set<string>();
  for (const lot of lots) {
    const voidOnRelease = lot.voidOnRelease ?? 0;
    same(
      0 <= voidOnRelease &&
        voidOnRelease <= lot.held &&
        lot.held <= lot.remaining &&
        lot.remaining <= lot.granted,
      true,
      `lot bounds ${JSON.stringify(lot)}`,
    );
    if (lot.status !== "active") {
      same(lot.remaining, lot.held, "an inactive lot keeps only held credits");
    }
    same(lot.closed, lot.status !== "active");
    same(keys.has(lot.sourceKey), false, `source key ${lot.sourceKey} granted twice`);
    keys.add(lot.sourceKey);
    const rows = ledgerByLot.get(lot._id) ?? [];
    same(sum(rows.map((row) => row.delta)), availableOf(lot), "lot rows = its available credits");
    same(sum(rows.map((row) => row.reservedDelta ?? 0)), lot.held, "lot rows = its held credits");
    const allocated = allocatedByLot.get(lot._id) ?? [];
    same(sum(allocated.map((a) => a.credits)), lot.held, "held = unfinished jobs' allocations");
  }
  for (const user of users) {
    same(Number.isSafeInteger(user.credits), true, "integer balance");
    if (!(user.credits >= 0)) {
      expect(user.credits, "balance >= 0").toBeGreaterThanOrEqual(0);
    }
    const rows = ledgerByUser.get(user._id) ?? [];
    const own = lotsByUser.get(user._id) ?? [];
    same(
      user.credits,
      sum(rows.map((row) => row.delta)),
      `credits = sum of ledger for ${user.clerkId}`,
    );
    same(user.credits, sum(own.map(availableOf)), "credits = available credits of the active lots");
    same(
      user.reservedCredits ?? 0,
      sum(rows.map((row) => row.reservedDelta ?? 0)),
      "reservedCredits = sum of reservedDelta",
    );
    same(
      user.reservedCredits ?? 0,
      sum(own.map((lot) => lot.held)),
      "reservedCredits = held credits of the lots",
    );
    const held = (heldJobsByUser.get(user._id) ?? []).reduce(
      (total, job) => total + job.creditsUsed,
      0,
    );
    same(user.reservedCredits ?? 0, held, "reserved credits = the held jobs' prices");
  }
  for (const job of jobs) {
    same(
      sum((job.allocations ?? []).map((a) => a.credits)),
      job.creditsUsed,
      "allocations = price",
    );
    const rows = ledgerByJob.get(job._id) ?? [];
    const of = (...kinds: string[]) => rows.filter((row) => kinds.includes(row.kind));
    const reserves = of("reserve");
    same(sum(reserves.map((r) => r.delta)), -job.creditsUsed, "reserve rows take the price");
    same(sum(reserves.map((r) => r.reservedDelta ?? 0)), job.creditsUsed, "and hold it");
    const settles = of("settle");
    const releases = of("release", "void", "return");
    same(settles.length > 0 && releases.length > 0, false, "settled or released, never both");
    const expected = settles.length > 0 ? "settled" : releases.length > 0 ? "refunded" : "held";
    same(job.creditStatus, expected, "creditStatus matches the ledger");
    if (expected === "settled") {
      same(sum(settles.map((r) => r.reservedDelta ?? 0)), -job.creditsUsed);
      same(
        settles.every((r) => r.delta === 0),
        true,
      );
      const reservedLots = new Set(reserves.map((r) => r.lotId));
      same(
        settles.every((r) => reservedLots.has(r.lotId)),
        true,
        "consumes only what it held",
      );
    }
    if (expected === "refunded") {
      same(
        sum(releases.map((r) => r.reservedDelta ?? 0)),
        -job.creditsUsed,
        "release ends the hold",
      );
      const voided = -sum(of("void").map((r) => r.reservedDelta ?? 0));
      same(
        sum(releases.map((r) => r.delta)),
        job.creditsUsed - voided,
        "all of it back but what was voided",
      );
    }
    if (job.status === "done" || job.status === "expired") {
      same(job.creditStatus, "settled");
    } else if (job.status === "failed" || job.status === "canceled") {
      same(job.creditStatus, "refunded");
    } else {
      same(job.creditStatus, "held");
    }
  }
  for (const refund of refunds) {
    const parts =
      refund.creditsReclaimed + (refund.pendingCredits ?? 0) + refund.outstandingCredits;
    if (refund.status === "executed") {
      same(parts, refund.creditsDue ?? 0, "reclaimed + pending + outstanding = due");
    } else {
      same(parts, 0);
    }
  }
  const noticeKeys = new Set<string>();
  for (const notice of notices) {
    const key = `${notice.userId}|${notice.kind}|${notice.key}`;
    same(noticeKeys.has(key), false, `notice ${key} decided twice`);
    noticeKeys.add(key);
    same(notice.status !== "not_sent" || notice.reason !== undefined, true, "not_sent: a reason");
  }
}

/** Totals + unfolded deltas = the live active subscriptions (see model/subscriptionTotals.ts). */
export function checkSubscriptionGauges(db: {
  subscriptions: Doc<"subscriptions">[];
  plans: Doc<"plans">[];
  totals: Doc<"subscriptionTotals">[];
  deltas: Doc<"subscriptionTotalDeltas">[];
}) {
  const price = new Map(db.plans.map((plan) => [plan.name, plan.price]));
  const live = { starter: 0, creator: 0, studio: 0, mrr: {} as Record<string, number> };
  for (const sub of db.subscriptions.filter((s) => s.status === "active")) {
    live[sub.plan] += 1;
    const currency = sub.currency ?? "GBP";
    live.mrr[currency] = (live.mrr[currency] ?? 0) + (price.get(sub.plan) ?? 0);
  }
  const counted = { starter: 0, creator: 0, studio: 0, mrr: {} as Record<string, number> };
  for (const row of [...db.totals, ...db.deltas]) {
    counted.starter += row.active.starter;
    counted.creator += row.active.creator;
    counted.studio += row.active.studio;
    for (const [currency, amount] of Object.entries(row.mrr)) {
      counted.mrr[currency] = (counted.mrr[currency] ?? 0) + amount;
    }
  }
  const nonZero = (mrr: Record<string, number>) =>
    JSON.stringify(
      Object.entries(mrr)
        .filter(([, amount]) => amount !== 0)
        .sort(([a], [b]) => a.localeCompare(b)),
    );
  same(
    JSON.stringify({ ...counted, mrr: nonZero(counted.mrr) }),
    JSON.stringify({ ...live, mrr: nonZero(live.mrr) }),
    "subscription totals + pending deltas = the live active subscriptions",
  );
}
