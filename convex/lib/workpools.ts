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

/**
 * TrueLayer calls creating renewal payments in flight at once (`subscriptions.createRenewal`,
 * each a token request and a payment creation): 10^5 renewals falling due at the same second
 * are created this many at a time, not all at once.
 */
export const RENEWAL_CREATION_PARALLELISM = 10;

/** Renewal payment creation with TrueLayer: one run per recorded renewal payment. */
export const renewalCreationPool = new Workpool(components.renewalCreations, {
  maxParallelism: RENEWAL_CREATION_PARALLELISM,
  // Safe to retry: the TrueLayer call's idempotency key is our payment id (one TrueLayer payment
  // however often it is sent), and a run whose payment no longer awaits creation does nothing.
  // A renewal still not created after these tries fails and is due again after the
  // subscription's own, longer backoff (model/subscriptionRenewals.ts).
  retryActionsByDefault: true,
  defaultRetryBehavior: { maxAttempts: 3, initialBackoffMs: 1_000, base: 2 },
});
