import { afterEach, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import { isAppError } from "../convex/lib/errors";
import { checkInvariants } from "./support/invariants";
import { setup, signUp } from "./support/setup";

/*
 * Random sequences of job and credit operations (create with and without idempotency keys, status
 * reports and their duplicates, cancel, settle, refund, expiry, grants) must keep the money
 * invariants of tests/support/invariants.ts after every step; refusals must leave no trace.
 * tests/modelBased.test.ts goes further: it predicts every outcome with a reference model.
 */

/** A small deterministic PRNG (mulberry32) so a failure replays exactly. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const EXPECTED_REFUSALS = new Set(["INVALID_TRANSITION", "INSUFFICIENT_CREDITS", "NOT_FOUND"]);

afterEach(() => {
  vi.useRealTimers();
});

test.each([1, 2, 3])("300 random operations keep the money invariants (seed %i)", async (seed) => {
  vi.useFakeTimers({ now: new Date("2026-11-25T00:00:00Z") });
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const t = await setup();
  const users = await Promise.all(["a", "b", "c"].map((id) => signUp(t, `user_${id}`)));
  const jobs: Array<{ jobId: Id<"jobs">; owner: (typeof users)[number] }> = [];
  const counts: Record<string, number> = {};

  for (let step = 0; step < 300; step++) {
    const op =
      jobs.length === 0
        ? "create"
        : pick([
            "create",
            "create",
            "status",
            "status",
            "status",
            "duplicate",
            "cancel",
            "refund",
            "settle",
            "expire",
            "grant",
          ] as const);
    counts[op] = (counts[op] ?? 0) + 1;
    const job = jobs.length > 0 ? pick(jobs) : undefined;
    try {
      switch (op) {
        case "create": {
          const owner = pick(users);
          const key = random() < 0.3 ? `key-${Math.floor(random() * 5)}` : undefined;
          const jobId = await owner.as.mutation(api.jobs.createJob, {
            prompt: key ?? `prompt ${step}`,
            durationSec: key ? 5 : pick([5, 10, 15]),
            idempotencyKey: key,
          });
          jobs.push({ jobId, owner });
          break;
        }
        case "status":
        case "duplicate": {
          const status = pick(["queued", "running", "done", "failed"] as const);
          const args = {
            jobId: job!.jobId,
            status,
            r2Url: "https://r2.example.com/v.mp4",
            error: "boom",
          };
          await t.mutation(internal.jobs.updateJobStatus, args);
          if (op === "duplicate") await t.mutation(internal.jobs.updateJobStatus, args);
          break;
        }
        case "cancel":
          await job!.owner.as.mutation(api.jobs.cancelJob, { jobId: job!.jobId });
          break;
        case "refund":
          await t.mutation(internal.credits.refundCredits, { jobId: job!.jobId });
          break;
        case "settle":
          await t.mutation(internal.credits.settleCredits, { jobId: job!.jobId });
          break;
        case "expire":
          vi.advanceTimersByTime(random() * 30 * 60 * 60 * 1000);
          await t.mutation(internal.jobs.expireOldJobs, {});
          await t.finishAllScheduledFunctions(vi.runAllTimers);
          break;
        case "grant":
          await t.mutation(internal.credits.grantCredits, {
            userId: pick(users).userId,
            credits: 10,
            note: "top up",
          });
          break;
      }
    } catch (error) {
      // Refusals are fine (and must leave no trace: the invariants below check that); anything else is a bug.
      if (!(isAppError(error) && EXPECTED_REFUSALS.has(error.data.code))) throw error;
    }
    await checkInvariants(t);
  }
  expect(Object.keys(counts).length).toBeGreaterThanOrEqual(8);
});
