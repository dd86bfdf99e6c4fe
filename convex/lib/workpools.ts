import { Workpool } from "@convex-dev/workpool";
import { components } from "../_generated/api";

/**
 * Outbound work through @convex-dev/workpool (instances in convex.config.ts): at most
 * `maxParallelism` runs at once however much is enqueued, an action that throws is retried with
 * exponential backoff and jitter, and an `onComplete` mutation hears every outcome.
 */

/** Runs of `media.deleteVideoObjects` in flight at once (each DELETEs 8 objects at a time). */
export const R2_DELETION_PARALLELISM = 4;

/** R2 deletions: one run per batch of `videoDeletions` rows (model/videoDeletions.ts). */
export const r2DeletionPool = new Workpool(components.r2Deletions, {
  maxParallelism: R2_DELETION_PARALLELISM,
  // The action is idempotent (it skips rows already done), so a crashed run is retried.
  retryActionsByDefault: true,
  defaultRetryBehavior: { maxAttempts: 3, initialBackoffMs: 5_000, base: 2 },
});
