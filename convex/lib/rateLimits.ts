import { HOUR, MINUTE, RateLimiter } from "@convex-dev/rate-limiter";
import { components } from "../_generated/api";
import type { ActionCtx, MutationCtx } from "../_generated/server";
import { rateLimitedError } from "./errors";

/**
 * Every per-user limit, in one place (@convex-dev/rate-limiter, token buckets keyed by user).
 * A refused call is a ConvexError `RATE_LIMITED` with `retryAfter` (ms) and writes nothing: the
 * limiter's own write rolls back with the rest of the mutation, and so does a token taken by a
 * mutation that then fails (a job refused for credits costs no token).
 */
export const RATE_LIMITS = {
  /** `payments.createCheckout`: each call creates a TrueLayer payment with the merchant's quota. */
  createCheckout: { kind: "token bucket", rate: 3, period: 10 * MINUTE, capacity: 3 },
  /** `subscriptions.setUpAutoRenewal`: each call creates a TrueLayer mandate, like a checkout. */
  setUpAutoRenewal: { kind: "token bucket", rate: 3, period: 10 * MINUTE, capacity: 3 },
  /** `jobs.createJob`: one account cannot flood the shared GPU queue. */
  createJob: { kind: "token bucket", rate: 30, period: MINUTE, capacity: 30 },
  /** `jobs.generateImageUploadUrl`, bursts. */
  imageUploadUrl: { kind: "token bucket", rate: 10, period: MINUTE, capacity: 10 },
  /** `jobs.generateImageUploadUrl`, per day. */
  imageUploadUrlDaily: { kind: "token bucket", rate: 50, period: 24 * HOUR, capacity: 50 },
} as const;

/**
 * Input-image uploads (and unspent upload URLs) a user may hold that no job has used yet
 * (model/imageUploads.ts): beyond, `jobs.generateImageUploadUrl` is RATE_LIMITED until one frees.
 */
export const IMAGE_UPLOADS_UNUSED_MAX = 20;

export type RateLimitName = keyof typeof RATE_LIMITS;

const rateLimiter = new RateLimiter(components.rateLimiter, RATE_LIMITS);

/** Takes one token of `name` for `key` (a user id or Clerk id), or throws RATE_LIMITED. */
export async function enforceRateLimit(
  ctx: MutationCtx | ActionCtx,
  name: RateLimitName,
  key: string,
  message: string,
): Promise<void> {
  const status = await rateLimiter.limit(ctx, name, { key });
  if (!status.ok) {
    throw rateLimitedError(message, status.retryAfter);
  }
}
