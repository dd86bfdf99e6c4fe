/**
 * Per-user rate limits (convex/lib/rateLimits.ts), through the public functions, with the clock
 * moved: a refusal is RATE_LIMITED with `retryAfter` (ms), writes nothing, and the same call goes
 * through once `retryAfter` has passed; one user's limit never touches another's.
 */
import { ConvexError } from "convex/values";
import { afterEach, beforeAll, beforeEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import { rateLimitedError, type ErrorData } from "../convex/lib/errors";
import { jsonErrorResponse } from "../convex/lib/http";
import type { Id } from "../convex/_generated/dataModel";
import { IMAGE_UPLOADS_UNUSED_MAX, RATE_LIMITS } from "../convex/lib/rateLimits";
import { IMAGE_UPLOAD_URL_TTL_MS } from "../convex/model/imageUploads";
import { CHECKOUT_REUSE_MS } from "../convex/model/payments";
import { WEBP_IMAGE } from "./support/httpRoutes";
import { snapshotDatabase } from "./support/hardening";
import {
  expectCode,
  finishDueScheduledFunctions,
  setup,
  signUp,
  type TestConvex,
} from "./support/setup";
import {
  PAYMENTS_URL,
  deliverTrueLayer,
  generateEs512Key,
  jsonResponse,
  stubTrueLayerEnv,
  trueLayerNetwork,
  type EcKey,
} from "./support/truelayer";

beforeEach(() => {
  vi.useFakeTimers({ now: new Date("2026-11-25T10:00:00Z") });
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllEnvs();
  vi.unstubAllGlobals();
});

/** Awaits `call`, which must be refused RATE_LIMITED without a write; returns `retryAfter`. */
async function expectRateLimited(t: TestConvex, call: () => Promise<unknown>): Promise<number> {
  const before = await snapshotDatabase(t);
  const error = await call().then(
    () => null,
    (e: unknown) => e,
  );
  expect(error, "expected RATE_LIMITED").toBeInstanceOf(ConvexError);
  const data = (error as ConvexError<ErrorData>).data;
  expect(data.code).toBe("RATE_LIMITED");
  expect(Number.isInteger(data.retryAfter) && data.retryAfter! > 0).toBe(true);
  expect(await snapshotDatabase(t), "a refusal writes nothing").toStrictEqual(before);
  return data.retryAfter!;
}

async function grant(t: TestConvex, userId: string, credits: number) {
  await t.mutation(internal.credits.grantCredits, {
    userId: userId as never,
    credits,
    note: "rate-limit test",
  });
}

describe("jobs.createJob", () => {
  const { capacity, rate, period } = RATE_LIMITS.createJob;

  test("a burst beyond the limit is refused until a token is back; others are unaffected", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "flooder");
    await grant(t, userId, 1000);
    for (let i = 0; i < capacity; i++) {
      await as.mutation(api.jobs.createJob, { prompt: `p${i}`, durationSec: 5 });
    }
    const retryAfter = await expectRateLimited(t, () =>
      as.mutation(api.jobs.createJob, { prompt: "one more", durationSec: 5 }),
    );
    expect(retryAfter).toBeLessThanOrEqual(Math.ceil(period / rate));

    const other = await signUp(t, "neighbour");
    await other.as.mutation(api.jobs.createJob, { prompt: "mine", durationSec: 5 });

    vi.advanceTimersByTime(retryAfter - 1);
    await expectRateLimited(t, () =>
      as.mutation(api.jobs.createJob, { prompt: "too soon", durationSec: 5 }),
    );
    vi.advanceTimersByTime(1);
    await as.mutation(api.jobs.createJob, { prompt: "in time", durationSec: 5 });
  });

  test("an idempotent retry of a created job is never refused", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "retrier");
    await grant(t, userId, 1000);
    const first = await as.mutation(api.jobs.createJob, {
      prompt: "kept",
      durationSec: 5,
      idempotencyKey: "k1",
    });
    for (let i = 1; i < capacity; i++) {
      await as.mutation(api.jobs.createJob, { prompt: `p${i}`, durationSec: 5 });
    }
    expect(
      await as.mutation(api.jobs.createJob, {
        prompt: "kept",
        durationSec: 5,
        idempotencyKey: "k1",
      }),
    ).toBe(first);
    await expectRateLimited(t, () =>
      as.mutation(api.jobs.createJob, { prompt: "new", durationSec: 5, idempotencyKey: "k2" }),
    );
  });

  test("a job refused for credits takes no token", async () => {
    const t = await setup();
    const { as } = await signUp(t, "poor"); // 80 signup credits
    for (let i = 0; i < 5; i++) {
      await as.mutation(api.jobs.createJob, { prompt: `p${i}`, durationSec: 15 });
    }
    // 5 credits left, capacity - 5 tokens.
    for (let i = 0; i < capacity; i++) {
      await expectCode(
        as.mutation(api.jobs.createJob, { prompt: `big${i}`, durationSec: 15 }),
        "INSUFFICIENT_CREDITS",
      );
    }
    await as.mutation(api.jobs.createJob, { prompt: "fits", durationSec: 5 });
  });
});

describe("jobs.generateImageUploadUrl", () => {
  test("bursts are capped, and so is a day's worth of upload URLs", async () => {
    const t = await setup();
    const { as } = await signUp(t, "uploader");
    const burst = RATE_LIMITS.imageUploadUrl;
    const daily = RATE_LIMITS.imageUploadUrlDaily;
    for (let i = 0; i < burst.capacity; i++) {
      await as.mutation(api.jobs.generateImageUploadUrl, {});
    }
    const retryAfter = await expectRateLimited(t, () =>
      as.mutation(api.jobs.generateImageUploadUrl, {}),
    );
    vi.advanceTimersByTime(retryAfter);
    await as.mutation(api.jobs.generateImageUploadUrl, {});

    // Spread out so neither the burst limit nor the cap of unused uploads bites (unspent URLs
    // expire after an hour: 6 an hour stay below the cap): the daily cap does, after about its
    // capacity (plus what refilled meanwhile, about 2 an hour).
    let granted = burst.capacity + 1;
    const start = Date.now();
    let daylong = 0;
    while (daylong === 0 && granted <= 2 * daily.capacity) {
      vi.advanceTimersByTime(10 * burst.period);
      await finishDueScheduledFunctions(t);
      try {
        await as.mutation(api.jobs.generateImageUploadUrl, {});
        granted++;
      } catch {
        daylong = await expectRateLimited(t, () =>
          as.mutation(api.jobs.generateImageUploadUrl, {}),
        );
      }
    }
    const refilled = ((Date.now() - start) * daily.rate) / daily.period;
    expect(granted).toBeGreaterThanOrEqual(daily.capacity);
    expect(granted).toBeLessThanOrEqual(daily.capacity + Math.ceil(refilled) + 1);
    expect(daylong).toBeGreaterThan(burst.period / burst.rate);
    await signUp(t, "someone-else").then(({ as: other }) =>
      other.mutation(api.jobs.generateImageUploadUrl, {}),
    );
  });
});

describe("jobs.generateImageUploadUrl: unused uploads", () => {
  test(`a user holds at most ${IMAGE_UPLOADS_UNUSED_MAX} uploads and URLs no job used; using one frees a slot`, async () => {
    const t = await setup();
    const { as } = await signUp(t, "hoarder");
    const urls: string[] = [];
    for (let i = 0; i < IMAGE_UPLOADS_UNUSED_MAX; i++) {
      if (i > 0 && i % RATE_LIMITS.imageUploadUrl.capacity === 0) {
        vi.advanceTimersByTime(RATE_LIMITS.imageUploadUrl.period);
      }
      urls.push(await as.mutation(api.jobs.generateImageUploadUrl, {}));
    }
    vi.advanceTimersByTime(RATE_LIMITS.imageUploadUrl.period);
    // Upload to the first URL: still unused until a job uses it.
    const first = new URL(urls[0]);
    const uploaded = await t.fetch(first.pathname + first.search, {
      method: "POST",
      headers: { "Content-Type": "image/webp" },
      body: WEBP_IMAGE,
    });
    expect(uploaded.status).toBe(200);
    const { storageId } = (await uploaded.json()) as { storageId: Id<"_storage"> };
    const retryAfter = await expectRateLimited(t, () =>
      as.mutation(api.jobs.generateImageUploadUrl, {}),
    );
    // The first slot frees when the oldest unspent URL expires (an hour after it was made).
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(IMAGE_UPLOAD_URL_TTL_MS);
    // Another user is not concerned.
    await signUp(t, "someone-else").then(({ as: other }) =>
      other.mutation(api.jobs.generateImageUploadUrl, {}),
    );
    // A job uses the upload: a slot frees.
    await as.mutation(api.jobs.createJob, {
      prompt: "x",
      imageStorageId: storageId,
      durationSec: 5,
    });
    await as.mutation(api.jobs.generateImageUploadUrl, {});
    await expectRateLimited(t, () => as.mutation(api.jobs.generateImageUploadUrl, {}));
  });
});

describe("payments.createCheckout", () => {
  let merchantKey: EcKey;
  let webhookKey: EcKey;
  beforeAll(() => {
    merchantKey = generateEs512Key("merchant-kid");
    webhookKey = generateEs512Key("tl-webhooks-1");
  });

  /** A deployment whose TrueLayer creates payments `tl-1`, `tl-2`… (resource tokens `token-n`). */
  async function checkoutWorld() {
    stubTrueLayerEnv(merchantKey);
    vi.stubEnv("TRUELAYER_RETURN_URI", "https://app.example.com/billing");
    const t = await setup();
    const { as, userId } = await signUp(t, "shopper");
    const created = { n: 0 };
    trueLayerNetwork(webhookKey, {
      [PAYMENTS_URL]: () => {
        created.n++;
        return jsonResponse(201, {
          id: `tl-${created.n}`,
          resource_token: `token-${created.n}`,
          user: { id: "tl-user" },
          status: "authorization_required",
        });
      },
    });
    const checkout = (planName: string) => as.action(api.payments.createCheckout, { planName });
    /** The payer's bank refused the checkout's payment (it can no longer be paid). */
    const refuse = async (trueLayerPaymentId: string) => {
      const response = await deliverTrueLayer(t, webhookKey, {
        type: "payment_failed",
        event_version: 1,
        event_id: `evt-${trueLayerPaymentId}`,
        payment_id: trueLayerPaymentId,
        failure_reason: "authorization_failed",
      });
      expect(response.status).toBe(200);
    };
    const payments = () =>
      t.run(async (ctx) =>
        (await ctx.db.query("payments").collect()).filter((p) => p.userId === userId),
      );
    return { t, as, created, checkout, refuse, payments };
  }

  test("the same quote while its page is valid: the same checkout again, no TrueLayer call, no token spent", async () => {
    const { created, checkout, refuse, payments } = await checkoutWorld();
    const first = await checkout("creator");
    expect(first).toMatchObject({ trueLayerPaymentId: "tl-1", resourceToken: "token-1" });
    expect(first.hostedPaymentPageUrl).toContain("token-1");
    const { capacity } = RATE_LIMITS.createCheckout;
    for (let i = 0; i < capacity + 2; i++) {
      vi.advanceTimersByTime(60_000);
      expect(await checkout("creator")).toEqual(first);
    }
    expect(created.n, "one TrueLayer payment").toBe(1);
    expect(await payments()).toHaveLength(1);

    // Its page is no longer valid: a new checkout (the old one stays pending until TrueLayer
    // reports it). The reuses took no token: `capacity` new checkouts are still allowed.
    vi.advanceTimersByTime(CHECKOUT_REUSE_MS - (capacity + 2) * 60_000);
    for (let i = 0; i < capacity; i++) {
      const fresh = await checkout("creator");
      expect(fresh).toMatchObject({ trueLayerPaymentId: `tl-${i + 2}`, amount: first.amount });
      await refuse(fresh.trueLayerPaymentId);
    }
    expect(created.n).toBe(capacity + 1);
    expect((await payments())[0]).toMatchObject({ _id: first.paymentId, status: "pending" });
  });

  test("another quote, or a checkout that can no longer be paid, is a new checkout", async () => {
    const { created, checkout, refuse, payments } = await checkoutWorld();
    const creator = await checkout("creator");
    const studio = await checkout("studio");
    expect(studio.paymentId).not.toBe(creator.paymentId);
    expect(studio.trueLayerPaymentId).toBe("tl-2");
    // The creator checkout was for the same subscription start, priced the same: still valid.
    expect(await checkout("creator")).toEqual(creator);
    await refuse(creator.trueLayerPaymentId);
    const again = await checkout("creator");
    expect(again.trueLayerPaymentId).toBe("tl-3");
    expect(created.n).toBe(3);
    expect((await payments()).map((p) => p.status)).toEqual(["failed", "pending", "pending"]);
  });

  test("beyond reuse, a few new checkouts per user in ten minutes: then RATE_LIMITED before TrueLayer is called", async () => {
    const { t, created, checkout, refuse } = await checkoutWorld();
    const { capacity } = RATE_LIMITS.createCheckout;
    for (let i = 0; i < capacity; i++) {
      // Each refused by the payer's bank: the next is a new checkout.
      await refuse((await checkout("creator")).trueLayerPaymentId);
    }
    expect(created.n).toBe(capacity);
    const retryAfter = await expectRateLimited(t, () => checkout("creator"));
    expect(created.n, "no TrueLayer call for a refused checkout").toBe(capacity);

    vi.advanceTimersByTime(retryAfter);
    await checkout("creator");
    expect(created.n).toBe(capacity + 1);
  });
});

test("over HTTP, RATE_LIMITED is a 429 with Retry-After in seconds and retryAfter in ms", async () => {
  const response = jsonErrorResponse(rateLimitedError("Slow down.", 1500.2));
  expect(response.status).toBe(429);
  expect(response.headers.get("Retry-After")).toBe("2");
  expect(await response.json()).toEqual({
    code: "RATE_LIMITED",
    message: "Slow down.",
    retryAfter: 1501,
  });
});
