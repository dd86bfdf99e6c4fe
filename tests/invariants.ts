import { expect } from "vitest";
import type { TestConvex } from "./setup";

/**
 * The money invariants, checked over the whole database:
 * - every balance is a whole number >= 0 and equals the sum of the user's ledger deltas;
 * - `reservedCredits` equals what the user's held jobs reserved;
 * - every job has exactly one `reserve` row of its price, and at most one of `settle` or
 *   `refund` (never both), matching its `creditStatus` and its status.
 */
export async function checkInvariants(t: TestConvex) {
  const { users, jobs, ledger } = await t.run(async (ctx) => ({
    users: await ctx.db.query("users").collect(),
    jobs: await ctx.db.query("jobs").collect(),
    ledger: await ctx.db.query("ledger").collect(),
  }));
  for (const user of users) {
    expect(Number.isSafeInteger(user.credits), "integer balance").toBe(true);
    expect(user.credits, "balance >= 0").toBeGreaterThanOrEqual(0);
    const rows = ledger.filter((row) => row.userId === user._id);
    expect(user.credits, `credits = sum of ledger for ${user.clerkId}`).toBe(
      rows.reduce((sum, row) => sum + row.delta, 0),
    );
    const held = jobs
      .filter((job) => job.userId === user._id && job.creditStatus === "held")
      .reduce((sum, job) => sum + job.creditsUsed, 0);
    expect(user.reservedCredits ?? 0, "reservedCredits = held jobs").toBe(held);
  }
  for (const job of jobs) {
    const rows = ledger.filter((row) => row.jobId === job._id);
    const reserves = rows.filter((row) => row.kind === "reserve");
    const settles = rows.filter((row) => row.kind === "settle");
    const refunds = rows.filter((row) => row.kind === "refund");
    expect(
      reserves.map((row) => row.delta),
      "one reserve of the job's price",
    ).toEqual([-job.creditsUsed]);
    expect(settles.length + refunds.length, "settled or refunded at most once").toBeLessThanOrEqual(
      1,
    );
    expect(settles.every((row) => row.delta === 0)).toBe(true);
    expect(refunds.every((row) => row.delta === job.creditsUsed)).toBe(true);
    const expected = settles.length === 1 ? "settled" : refunds.length === 1 ? "refunded" : "held";
    expect(job.creditStatus, "creditStatus matches the ledger").toBe(expected);
    if (job.status === "done" || job.status === "expired") {
      expect(job.creditStatus).toBe("settled");
    } else if (job.status === "failed" || job.status === "canceled") {
      expect(job.creditStatus).toBe("refunded");
    } else {
      expect(job.creditStatus).toBe("held");
    }
  }
}
