import { readFileSync, readdirSync } from "node:fs";
import { expect, test } from "vitest";

/**
 * Every cron sweep is built by `sweepMutation` (convex/lib/sweeps.ts), which reschedules the
 * function by the path it is given: that path must be the function's own, or a backlog would
 * be handed to another function.
 */
test("every sweep reschedules itself by its own path", () => {
  const found: string[] = [];
  for (const file of readdirSync("convex").filter((name) => name.endsWith(".ts"))) {
    const source = readFileSync(`convex/${file}`, "utf8");
    for (const [, exported, name] of source.matchAll(
      /export const (\w+) = sweepMutation\(\{\s*name: "([^"]+)"/g,
    )) {
      expect(name).toBe(`${file.replace(/\.ts$/, "")}:${exported}`);
      found.push(name);
    }
  }
  expect(found.sort()).toEqual([
    "credits:expireDueLots",
    "jobs:expireOldJobs",
    "media:sweepVideoDeletions",
    "metrics:foldBucketDeltas",
    "metrics:foldHours",
    "metrics:foldSubscriptionTotals",
    "metrics:pruneOldBuckets",
    "notices:sweepExpiringCreditNotices",
    "subscriptions:sweepDue",
    "webhooks:pruneOldEvents",
    "worker:sweepExpiredLeases",
    "worker:sweepQueueTimeouts",
  ]);
});
