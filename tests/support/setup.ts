/// <reference types="vite/client" />
import rateLimiterTest from "@convex-dev/rate-limiter/test";
import resendTest from "@convex-dev/resend/test";
// The rate limiter nested under the Resend component is its own (older) version: registered from
// its own package, which npm installed under the component's.
import resendRateLimiterTest from "../../node_modules/@convex-dev/resend/node_modules/@convex-dev/rate-limiter/src/test";
import workpoolTest from "@convex-dev/workpool/test";
import { convexTest } from "convex-test";
import { ConvexError } from "convex/values";
import { expect, vi } from "vitest";
import schema from "../../convex/schema";
import { api, internal } from "../../convex/_generated/api";
import type { Id } from "../../convex/_generated/dataModel";
import { RATE_LIMITS } from "../../convex/lib/rateLimits";

export const modules = import.meta.glob("../../convex/**/*.ts");

export type TestConvex = ReturnType<typeof newConvex>;

/**
 * Registers the components of convex/convex.config.ts, under the same names, the way each
 * package's `/test` export says (each also registers its own nested components).
 */
export function registerComponents<T extends Parameters<typeof rateLimiterTest.register>[0]>(
  t: T,
): T {
  rateLimiterTest.register(t, "rateLimiter");
  resendTest.register(t, "resend");
  resendRateLimiterTest.register(t, "resend/rateLimiter");
  workpoolTest.register(t, "resend/emailWorkpool");
  workpoolTest.register(t, "resend/callbackWorkpool");
  workpoolTest.register(t, "r2Deletions");
  workpoolTest.register(t, "renewalCreations");
  return t;
}

/** A fresh in-memory deployment with Convex's transaction limits enforced. */
export function newConvex() {
  return registerComponents(convexTest({ schema, modules, transactionLimits: true }));
}

/** A fresh deployment with the plans seeded. */
export async function setup() {
  const t = newConvex();
  await t.mutation(internal.plans.seedPlans, {});
  return t;
}

/**
 * Runs the scheduled functions due now on the fake clock (`vi.useFakeTimers`), and those they
 * schedule for now, until none is due; later ones stay pending. What
 * `t.finishAllScheduledFunctions(() => vi.advanceTimersByTime(0))` does, without its wait for
 * timers set under real timers: while any scheduled function is pending (a lot expiring next
 * month), that call yields 20 real event-loop turns (~25 ms idle) before it returns.
 */
export async function finishDueScheduledFunctions(t: TestConvex) {
  if (!vi.isFakeTimers()) {
    throw new Error("finishDueScheduledFunctions needs fake timers (vi.useFakeTimers)");
  }
  for (let round = 0; round < 100; round++) {
    // Functions a timer started before this call (inside advanceTimersByTime) finish first, so
    // what they schedule for now is run in this drain too.
    await t.finishInProgressScheduledFunctions();
    const pending = vi.getTimerCount();
    vi.advanceTimersByTime(0);
    const fired = vi.getTimerCount() < pending;
    await t.finishInProgressScheduledFunctions();
    if (!fired) {
      return;
    }
  }
  throw new Error("finishDueScheduledFunctions: scheduled functions keep scheduling more");
}

/**
 * Runs the every-minute fold of the metrics' delta rows (`metrics:foldBucketDeltas`) until none
 * wait, as the cron would: for tests that read `metricsBuckets` directly. Returns how many it folded.
 */
export async function foldBucketDeltas(t: TestConvex): Promise<number> {
  let folded = 0;
  for (;;) {
    const result = await t.mutation(internal.metrics.foldBucketDeltas, {});
    folded += result.folded;
    if (!result.more) return folded;
  }
}

/** Renewal payments recorded and not yet created with TrueLayer nor failed. */
async function renewalsAwaitingCreation(t: TestConvex): Promise<number> {
  return await t.run(async (ctx) => {
    const payments = await ctx.db.query("payments").collect();
    return payments.filter(
      (p) => p.status === "pending" && p.purpose === "renewal" && p.trueLayerTxnId === "",
    ).length;
  });
}

/** The fake clock's step while the renewal creation workpool runs (its loop's 100 ms segments). */
export const WORKPOOL_TICK_MS = 100;

/**
 * Runs what is due on the fake clock, then lets the renewal creation workpool create the renewal
 * payments recorded (lib/workpools.ts): its loop picks work up on 100 ms segments of the clock
 * and a failed try is retried after seconds, so the clock moves on in `WORKPOOL_TICK_MS` steps
 * until no renewal payment waits for TrueLayer (each created, or failed for good). Returns how
 * far the clock moved (0 when nothing waited).
 */
export async function drainRenewalCreations(t: TestConvex, maxMs = 60_000): Promise<number> {
  await finishDueScheduledFunctions(t);
  let moved = 0;
  while ((await renewalsAwaitingCreation(t)) > 0) {
    if (moved >= maxMs) {
      throw new Error(`drainRenewalCreations: renewals still not created after ${maxMs} ms`);
    }
    vi.advanceTimersByTime(WORKPOOL_TICK_MS);
    moved += WORKPOOL_TICK_MS;
    await finishDueScheduledFunctions(t);
  }
  return moved;
}

export function identityFor(clerkId: string) {
  return {
    subject: clerkId,
    issuer: "https://clerk.test",
    tokenIdentifier: `https://clerk.test|${clerkId}`,
  };
}

/** Signs up `clerkId` and returns the user id plus a client acting as that user. */
export async function signUp(t: TestConvex, clerkId: string, email = `${clerkId}@example.com`) {
  const as = t.withIdentity(identityFor(clerkId));
  const user = await as.mutation(api.users.getOrCreateUser, { clerkId, email });
  return { as, userId: user._id as Id<"users"> };
}

/** Asserts that `promise` rejects with a ConvexError carrying `code`. */
export async function expectCode(promise: Promise<unknown>, code: string) {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error, `expected ConvexError ${code}`).toBeInstanceOf(ConvexError);
  expect((error as ConvexError<{ code: string }>).data.code).toBe(code);
}

/**
 * A file in convex-test's storage with the content type an upload records (convex-test's
 * `store` keeps only size and sha256, so the metadata row gets the type the browser would send;
 * `null` leaves it without one).
 */
export async function storeFile(
  t: TestConvex,
  bytes: Uint8Array<ArrayBuffer>,
  contentType: string | null,
): Promise<Id<"_storage">> {
  return await t.run(async (ctx) => {
    const id = await ctx.storage.store(new Blob([bytes]));
    if (contentType !== null) {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      await (ctx.db as any).patch("_storage", id, { contentType });
    }
    return id;
  });
}

/**
 * For a test that seeds a backlog of one user's jobs through `jobs.createJob` under fake timers:
 * call it before the `i`-th job; every full burst it moves the clock by the limit's period, so
 * the per-user limit (lib/rateLimits.ts) has refilled and the seed is not refused.
 */
export function paceJobCreation(i: number): void {
  const { capacity, period } = RATE_LIMITS.createJob;
  if (i > 0 && i % capacity === 0) {
    vi.setSystemTime(Date.now() + period);
  }
}
