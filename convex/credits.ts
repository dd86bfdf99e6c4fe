import { paginationOptsValidator, paginationResultValidator } from "convex/server";
import { v } from "convex/values";
import { doc } from "convex-helpers/validators";
import schema from "./schema";
import { internalMutation, query } from "./_generated/server";
import { getCallerUser, requireCallerUser } from "./lib/auth";
import { appError } from "./lib/errors";
import { planValidator, creditStatusValidator } from "./lib/validators";
import { applyCreditChange } from "./model/ledger";
import {
  assertPositiveCredits,
  refundJobCredits,
  reserveCredits as reserve,
  settleJobCredits,
} from "./model/credits";
import { requireJob, transitionJob } from "./model/jobs";
import { requirePlan, publicPlan } from "./model/plans";
import { emptyPage, pageOptions, paginateChecked } from "./lib/pagination";

/**
 * The caller's balance and plan. `credits` is what can be spent now; `reserved` is held by
 * unfinished jobs (it comes back if they fail). Another user's id: FORBIDDEN.
 */
export const getCredits = query({
  args: { userId: v.optional(v.id("users")) },
  returns: v.object({ credits: v.number(), reserved: v.number(), plan: planValidator }),
  handler: async (ctx, { userId }) => {
    const user = await requireCallerUser(ctx);
    if (userId !== undefined && userId !== user._id) {
      throw appError("FORBIDDEN", "You can only read your own credits.");
    }
    const plan = await requirePlan(ctx, user.plan);
    return { credits: user.credits, reserved: user.reservedCredits ?? 0, plan: publicPlan(plan) };
  },
});

/** The caller's ledger, newest first (works with `usePaginatedQuery`; pages of at most 100). */
export const listLedger = query({
  args: { paginationOpts: paginationOptsValidator },
  returns: paginationResultValidator(doc(schema, "ledger")),
  handler: async (ctx, { paginationOpts }) => {
    const user = await getCallerUser(ctx);
    const page = pageOptions(paginationOpts);
    if (user === null) {
      return emptyPage<never>();
    }
    return await paginateChecked(
      ctx.db
        .query("ledger")
        .withIndex("by_userId", (q) => q.eq("userId", user._id))
        .order("desc"),
      page,
    );
  },
});

/**
 * Deducts `credits` if the balance covers them (a `reserve` ledger row); otherwise changes
 * nothing and says so. Jobs reserve through `jobs:createJob`; a job reserves exactly once, so
 * passing the id of a job that already holds a reservation is a CONFLICT.
 */
export const reserveCredits = internalMutation({
  args: { userId: v.id("users"), credits: v.number(), jobId: v.optional(v.id("jobs")) },
  returns: v.union(
    v.object({ ok: v.literal(true), balance: v.number() }),
    v.object({
      ok: v.literal(false),
      reason: v.literal("INSUFFICIENT_CREDITS"),
      balance: v.number(),
    }),
  ),
  handler: async (ctx, { userId, credits, jobId }) => {
    assertPositiveCredits(credits);
    if (jobId !== undefined) {
      const job = await requireJob(ctx, jobId);
      if (job.userId !== userId) {
        throw appError("INVALID_ARGUMENT", "jobId belongs to another user.");
      }
      const existing = await ctx.db
        .query("ledger")
        .withIndex("by_jobId", (q) => q.eq("jobId", jobId))
        .first();
      if (existing !== null) {
        throw appError("CONFLICT", "This job already holds its reservation.");
      }
    }
    return await reserve(ctx, userId, credits, jobId);
  },
});

const creditOutcome = v.object({ changed: v.boolean(), creditStatus: creditStatusValidator });

/**
 * Makes a done job's reservation final. Idempotent: a job already settled or refunded is left
 * as it is. A job that is not done cannot be settled (INVALID_TRANSITION).
 */
export const settleCredits = internalMutation({
  args: { jobId: v.id("jobs") },
  returns: creditOutcome,
  handler: async (ctx, { jobId }) => {
    const job = await requireJob(ctx, jobId);
    if (job.creditStatus !== "held") {
      return { changed: false, creditStatus: job.creditStatus };
    }
    if (job.status !== "done") {
      throw appError("INVALID_TRANSITION", `A ${job.status} job cannot be settled.`);
    }
    await settleJobCredits(ctx, job);
    return { changed: true, creditStatus: "settled" as const };
  },
});

/**
 * Returns a job's reservation and marks an unfinished job `failed`. Idempotent: a job already
 * settled or refunded is left as it is (a job is settled or refunded, never both).
 */
export const refundCredits = internalMutation({
  args: { jobId: v.id("jobs") },
  returns: creditOutcome,
  handler: async (ctx, { jobId }) => {
    const job = await requireJob(ctx, jobId);
    if (job.creditStatus !== "held") {
      return { changed: false, creditStatus: job.creditStatus };
    }
    if (job.status === "queued" || job.status === "running") {
      await transitionJob(ctx, job, "failed", { error: "Refunded by an operator." });
    } else {
      await refundJobCredits(ctx, job);
    }
    return { changed: true, creditStatus: "refunded" as const };
  },
});

/**
 * Support and operators: adds (or, negative, removes) credits with an `adjustment` ledger row.
 * Never takes a balance below zero.
 */
export const grantCredits = internalMutation({
  args: { userId: v.id("users"), credits: v.number(), note: v.string() },
  returns: v.object({ balance: v.number() }),
  handler: async (ctx, { userId, credits, note }) => {
    if (!Number.isSafeInteger(credits) || credits === 0) {
      throw appError("INVALID_ARGUMENT", "credits must be a non-zero whole number.");
    }
    const trimmed = note.trim();
    if (trimmed.length === 0 || trimmed.length > 500) {
      throw appError("INVALID_ARGUMENT", "note must be 1 to 500 characters saying why.");
    }
    const balance = await applyCreditChange(ctx, userId, {
      delta: credits,
      kind: "adjustment",
      note: trimmed,
    });
    return { balance };
  },
});
