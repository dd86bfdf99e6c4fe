import { expect } from "vitest";
import type { Doc } from "../../convex/_generated/dataModel";
import type { TestConvex } from "./setup";

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/**
 * The money invariants, checked over the whole database:
 * - every balance part is a whole number >= 0 and equals the sum of its ledger column:
 *   `credits` = Σ delta, `reservedCredits` = Σ reservedDelta, `owedCredits` = Σ owedDelta;
 * - reserved credits equal the held jobs' prices, and owed credits the executed refunds'
 *   outstanding credits;
 * - outstanding credits are paid down before a released hold reaches the balance: replaying a
 *   user's ledger, every `release` while credits are owed is followed at once by
 *   `refund_paydown` rows taking min(released, owed);
 * - every job has exactly one `reserve` row of its price, and at most one of `settle` or
 *   `release` (never both), matching its `creditStatus` and its status.
 */
export async function checkInvariants(t: TestConvex) {
  const { users, jobs, ledger, refunds } = await t.run(async (ctx) => ({
    users: await ctx.db.query("users").collect(),
    jobs: await ctx.db.query("jobs").collect(),
    ledger: await ctx.db.query("ledger").collect(),
    refunds: await ctx.db.query("refunds").collect(),
  }));
  for (const user of users) {
    expect(Number.isSafeInteger(user.credits), "integer balance").toBe(true);
    expect(user.credits, "balance >= 0").toBeGreaterThanOrEqual(0);
    const rows = ledger.filter((row) => row.userId === user._id);
    expect(user.credits, `credits = sum of ledger for ${user.clerkId}`).toBe(
      sum(rows.map((row) => row.delta)),
    );
    expect(user.reservedCredits ?? 0, "reservedCredits = sum of reservedDelta").toBe(
      sum(rows.map((row) => row.reservedDelta ?? 0)),
    );
    expect(user.owedCredits ?? 0, "owedCredits = sum of owedDelta").toBe(
      sum(rows.map((row) => row.owedDelta ?? 0)),
    );
    const held = jobs
      .filter((job) => job.userId === user._id && job.creditStatus === "held")
      .reduce((total, job) => total + job.creditsUsed, 0);
    expect(user.reservedCredits ?? 0, "reserved credits = the held jobs' prices").toBe(held);
    const outstanding = refunds
      .filter((refund) => refund.userId === user._id)
      .reduce((total, refund) => total + refund.outstandingCredits, 0);
    expect(user.owedCredits ?? 0, "owed credits = refunds' outstanding credits").toBe(outstanding);
    checkPaydownOrder(rows);
  }
  for (const job of jobs) {
    const rows = ledger.filter((row) => row.jobId === job._id);
    const reserves = rows.filter((row) => row.kind === "reserve");
    const settles = rows.filter((row) => row.kind === "settle");
    const releases = rows.filter((row) => row.kind === "release");
    expect(
      reserves.map((row) => [row.delta, row.reservedDelta]),
      "one reserve of the job's price",
    ).toEqual([[-job.creditsUsed, job.creditsUsed]]);
    expect(
      settles.length + releases.length,
      "settled or released at most once",
    ).toBeLessThanOrEqual(1);
    expect(settles.every((row) => row.delta === 0 && row.reservedDelta === -job.creditsUsed)).toBe(
      true,
    );
    expect(
      releases.every(
        (row) => row.delta === job.creditsUsed && row.reservedDelta === -job.creditsUsed,
      ),
    ).toBe(true);
    const expected = settles.length === 1 ? "settled" : releases.length === 1 ? "refunded" : "held";
    expect(job.creditStatus, "creditStatus matches the ledger").toBe(expected);
    if (job.status === "done" || job.status === "expired") {
      expect(job.creditStatus).toBe("settled");
    } else if (job.status === "failed" || job.status === "canceled") {
      expect(job.creditStatus).toBe("refunded");
    } else {
      expect(job.creditStatus).toBe("held");
    }
  }
  for (const refund of refunds) {
    const due = refund.creditsDue ?? 0;
    if (refund.status === "executed") {
      expect(refund.creditsReclaimed + refund.outstandingCredits, "reclaimed + owed = due").toBe(
        due,
      );
    } else {
      expect([refund.creditsReclaimed, refund.outstandingCredits]).toEqual([0, 0]);
    }
  }
}

/** Replays one user's ledger (in insertion order): releases pay down owed credits first. */
function checkPaydownOrder(rows: Doc<"ledger">[]) {
  let owed = 0;
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    if (row.kind === "release" && owed > 0) {
      let due = Math.min(row.delta, owed);
      let j = i + 1;
      while (due > 0) {
        const next = rows[j++];
        expect(next?.kind, "a release while credits are owed is followed by a pay-down").toBe(
          "refund_paydown",
        );
        due += next.delta;
      }
      expect(due, "the pay-down takes exactly min(released, owed)").toBe(0);
    }
    owed += row.owedDelta ?? 0;
  }
}
