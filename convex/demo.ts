import { v } from "convex/values";
import type { Doc, Id } from "./_generated/dataModel";
import type { MutationCtx } from "./_generated/server";
import { appError } from "./lib/errors";
import { internalMutation } from "./lib/functions";
import { trueLayerCurrency } from "./lib/truelayer";
import * as Jobs from "./model/jobs";
import * as JobRequests from "./model/jobRequests";
import * as Payments from "./model/payments";
import { currentSubscription } from "./model/subscriptionState";
import { upsertUser } from "./model/users";
import { workerConfig } from "./model/worker";

/**
 * Demo data for developing a UI without GPUs or payments (`npm run demo:seed`, docs/frontend.md).
 * Everything goes through the same model functions as real traffic (jobs are reserved and
 * settled or refunded, payments are applied as TrueLayer's webhook applies them), so the data
 * obeys every invariant. Local deployments only.
 */

/** A public sample video (Google's test bucket) for demo jobs that are done. */
export const DEMO_VIDEO_URL =
  "https://storage.googleapis.com/gtv-videos-bucket/sample/ForBiggerBlazes.mp4";

const DEMO_WORKER_ID = "demo-seed";

/**
 * Refuses unless this is a local deployment (`npx convex dev --local` / `npm run dev`: the
 * backend's own URL, CONVEX_CLOUD_URL, is on 127.0.0.1) or an operator allowed demo data on a
 * cloud dev deployment (CINEWEAVE_DEMO_DATA=allow); never with production payments configured.
 */
export function assertDemoDeployment(): void {
  if ((process.env.TRUELAYER_ENVIRONMENT ?? "").trim().toLowerCase() === "production") {
    throw appError("FORBIDDEN", "No demo data on a deployment with production payments.");
  }
  let host = "";
  try {
    host = new URL(process.env.CONVEX_CLOUD_URL ?? "").hostname;
  } catch {
    // Not a URL: not a local deployment.
  }
  const local = host === "127.0.0.1" || host === "localhost" || host === "[::1]";
  if (!local && process.env.CINEWEAVE_DEMO_DATA !== "allow") {
    throw appError(
      "FORBIDDEN",
      "Demo data goes only into a local deployment (or set CINEWEAVE_DEMO_DATA=allow on a dev deployment).",
    );
  }
}

type DemoJob = { key: string; prompt: string; durationSec: 5 | 10 | 15 };

const DEMO_JOBS: Record<Doc<"jobs">["status"], DemoJob> = {
  expired: { key: "demo:expired", prompt: "A paper boat on a rainy street", durationSec: 5 },
  failed: { key: "demo:failed", prompt: "A city skyline folding like a map", durationSec: 5 },
  canceled: { key: "demo:canceled", prompt: "A cat astronaut waving at Earth", durationSec: 5 },
  done: { key: "demo:done", prompt: "A red fox running through snow", durationSec: 10 },
  running: { key: "demo:running", prompt: "Waves crashing on black sand", durationSec: 5 },
  queued: { key: "demo:queued", prompt: "A hot-air balloon over lavender fields", durationSec: 10 },
};

/** Moves a new job to `status` the way a worker, its owner or the cron would. */
async function driveTo(ctx: MutationCtx, job: Doc<"jobs">, status: Doc<"jobs">["status"]) {
  const now = Date.now();
  const claim = {
    patch: {
      workerId: DEMO_WORKER_ID,
      attempt: 1,
      leaseExpiresAt: now + workerConfig().leaseMs,
      progress: 40,
    },
  };
  switch (status) {
    case "queued":
      return;
    case "canceled":
      await Jobs.transitionJob(ctx, job, "canceled");
      return;
    case "running":
      // Its lease runs out like a real one: the sweep requeues it, and `demo:worker` takes it.
      await Jobs.transitionJob(ctx, job, "running", claim);
      return;
    case "failed": {
      const { job: running } = await Jobs.transitionJob(ctx, job, "running", claim);
      await Jobs.transitionJob(ctx, running, "failed", { error: "CUDA out of memory (demo)" });
      return;
    }
    case "done":
    case "expired": {
      const { job: running } = await Jobs.transitionJob(ctx, job, "running", claim);
      const { job: done } = await Jobs.transitionJob(ctx, running, "done", {
        r2Url: DEMO_VIDEO_URL,
        ...(status === "expired" ? { expiresAt: Date.now() + 1000 } : {}),
      });
      if (status === "expired") {
        await Jobs.transitionJob(ctx, done, "expired");
      }
      return;
    }
  }
}

/** A checkout of `planName` that TrueLayer's webhook then reports as executed or failed. */
async function demoPayment(
  ctx: MutationCtx,
  user: Doc<"users">,
  planName: "creator" | "studio",
  outcome: "payment_executed" | "payment_failed",
): Promise<Id<"payments">> {
  const { paymentId } = await Payments.startCheckout(
    ctx,
    user.clerkId,
    planName,
    trueLayerCurrency(),
  );
  const trueLayerPaymentId = `demo-${paymentId}`;
  await Payments.attachTrueLayerPayment(
    ctx,
    paymentId,
    trueLayerPaymentId,
    `demo-token-${paymentId}`,
  );
  await Payments.applyTrueLayerEvent(ctx, {
    eventId: `demo-${outcome}-${paymentId}`,
    type: outcome,
    trueLayerPaymentId,
    failureReason: outcome === "payment_failed" ? "The bank declined it (demo)" : undefined,
    occurredAt: Date.now(),
  });
  return paymentId;
}

/**
 * Fills the deployment with a demo user (or the given Clerk user, to see the data signed in):
 * a job in every status, a paid subscription start (creator plan) and a failed upgrade payment.
 * Idempotent: a user seeded before is left as it is. Needs the plans (`plans:seedPlans`).
 */
export const seed = internalMutation({
  args: { clerkId: v.optional(v.string()), email: v.optional(v.string()) },
  returns: v.object({
    userId: v.id("users"),
    created: v.boolean(),
    jobIds: v.array(v.id("jobs")),
  }),
  handler: async (ctx, { clerkId = "demo_user", email = "demo@example.com" }) => {
    assertDemoDeployment();
    const user = await upsertUser(ctx, clerkId, email);
    const seededBefore = await ctx.db
      .query("jobs")
      .withIndex("by_userId_and_idempotencyKey", (q) =>
        q.eq("userId", user._id).eq("idempotencyKey", DEMO_JOBS.queued.key),
      )
      .unique();
    if (seededBefore !== null) {
      return { userId: user._id, created: false, jobIds: [] };
    }
    if ((await currentSubscription(ctx, user._id)) === null) {
      await demoPayment(ctx, user, "creator", "payment_executed");
      await demoPayment(ctx, user, "studio", "payment_failed");
    }
    const jobIds: Array<Id<"jobs">> = [];
    // Oldest first, so the list shows the queued job on top.
    for (const [status, demo] of Object.entries(DEMO_JOBS)) {
      const fresh = (await ctx.db.get("users", user._id))!;
      const { jobId } = await JobRequests.createJob(ctx, fresh, {
        prompt: demo.prompt,
        durationSec: demo.durationSec,
        idempotencyKey: demo.key,
      });
      await driveTo(ctx, (await ctx.db.get("jobs", jobId))!, status as Doc<"jobs">["status"]);
      jobIds.push(jobId);
    }
    return { userId: user._id, created: true, jobIds };
  },
});
