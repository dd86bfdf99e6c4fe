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
 * - an executed refund's due credits are reclaimed + pending + outstanding.
 */
export async function checkInvariants(t: TestConvex) {
  const { users, jobs, ledger, refunds, lots } = await t.run(async (ctx) => ({
    users: await ctx.db.query("users").collect(),
    jobs: await ctx.db.query("jobs").collect(),
    ledger: await ctx.db.query("ledger").collect(),
    refunds: await ctx.db.query("refunds").collect(),
    lots: await ctx.db.query("creditLots").collect(),
  }));
  const keys = new Set<string>();
  for (const lot of lots) {
    const voidOnRelease = lot.voidOnRelease ?? 0;
    expect(
      0 <= voidOnRelease &&
        voidOnRelease <= lot.held &&
        lot.held <= lot.remaining &&
        lot.remaining <= lot.granted,
      `lot bounds ${JSON.stringify(lot)}`,
    ).toBe(true);
    if (lot.status !== "active") {
      expect(lot.remaining, "an inactive lot keeps only held credits").toBe(lot.held);
    }
    expect(lot.closed).toBe(lot.status !== "active");
    expect(keys.has(lot.sourceKey), `source key ${lot.sourceKey} granted twice`).toBe(false);
    keys.add(lot.sourceKey);
    const rows = ledger.filter((row) => row.lotId === lot._id);
    expect(sum(rows.map((row) => row.delta)), "lot rows = its available credits").toBe(
      availableOf(lot),
    );
    expect(sum(rows.map((row) => row.reservedDelta ?? 0)), "lot rows = its held credits").toBe(
      lot.held,
    );
    const allocated = jobs
      .filter((job) => job.creditStatus === "held")
      .flatMap((job) => job.allocations ?? [])
      .filter((allocation) => allocation.lotId === lot._id);
    expect(sum(allocated.map((a) => a.credits)), "held = unfinished jobs' allocations").toBe(
      lot.held,
    );
  }
  for (const user of users) {
    expect(Number.isSafeInteger(user.credits), "integer balance").toBe(true);
    expect(user.credits, "balance >= 0").toBeGreaterThanOrEqual(0);
    const rows = ledger.filter((row) => row.userId === user._id);
    const own = lots.filter((lot) => lot.userId === user._id);
    expect(user.credits, `credits = sum of ledger for ${user.clerkId}`).toBe(
      sum(rows.map((row) => row.delta)),
    );
    expect(user.credits, "credits = available credits of the active lots").toBe(
      sum(own.map(availableOf)),
    );
    expect(user.reservedCredits ?? 0, "reservedCredits = sum of reservedDelta").toBe(
      sum(rows.map((row) => row.reservedDelta ?? 0)),
    );
    expect(user.reservedCredits ?? 0, "reservedCredits = held credits of the lots").toBe(
      sum(own.map((lot) => lot.held)),
    );
    const held = jobs
      .filter((job) => job.userId === user._id && job.creditStatus === "held")
      .reduce((total, job) => total + job.creditsUsed, 0);
    expect(user.reservedCredits ?? 0, "reserved credits = the held jobs' prices").toBe(held);
  }
  for (const job of jobs) {
    expect(sum((job.allocations ?? []).map((a) => a.credits)), "allocations = price").toBe(
      job.creditsUsed,
    );
    const rows = ledger.filter((row) => row.jobId === job._id);
    const of = (...kinds: string[]) => rows.filter((row) => kinds.includes(row.kind));
    const reserves = of("reserve");
    expect(sum(reserves.map((r) => r.delta)), "reserve rows take the price").toBe(-job.creditsUsed);
    expect(sum(reserves.map((r) => r.reservedDelta ?? 0)), "and hold it").toBe(job.creditsUsed);
    const settles = of("settle");
    const releases = of("release", "void", "return");
    expect(settles.length > 0 && releases.length > 0, "settled or released, never both").toBe(
      false,
    );
    const expected = settles.length > 0 ? "settled" : releases.length > 0 ? "refunded" : "held";
    expect(job.creditStatus, "creditStatus matches the ledger").toBe(expected);
    if (expected === "settled") {
      expect(sum(settles.map((r) => r.reservedDelta ?? 0))).toBe(-job.creditsUsed);
      expect(settles.every((r) => r.delta === 0)).toBe(true);
      const reservedLots = new Set(reserves.map((r) => r.lotId));
      expect(
        settles.every((r) => reservedLots.has(r.lotId)),
        "consumes only what it held",
      ).toBe(true);
    }
    if (expected === "refunded") {
      expect(sum(releases.map((r) => r.reservedDelta ?? 0)), "release ends the hold").toBe(
        -job.creditsUsed,
      );
      const voided = -sum(of("void").map((r) => r.reservedDelta ?? 0));
      expect(sum(releases.map((r) => r.delta)), "all of it back but what was voided").toBe(
        job.creditsUsed - voided,
      );
    }
    if (job.status === "done" || job.status === "expired") {
      expect(job.creditStatus).toBe("settled");
    } else if (job.status === "failed" || job.status === "canceled") {
      expect(job.creditStatus).toBe("refunded");
    } else {
      expect(job.creditStatus).toBe("held");
    }
  }
  for (const refund of refunds) {
    const parts =
      refund.creditsReclaimed + (refund.pendingCredits ?? 0) + refund.outstandingCredits;
    if (refund.status === "executed") {
      expect(parts, "reclaimed + pending + outstanding = due").toBe(refund.creditsDue ?? 0);
    } else {
      expect(parts).toBe(0);
    }
  }
}
