import { paginationOptsValidator, paginationResultValidator } from "convex/server";
import { v } from "convex/values";
import { doc } from "convex-helpers/validators";
import schema from "./schema";
import { internalMutation, maybeUserQuery, userQueryWithUserId } from "./lib/functions";
import { planValidator, creditStatusValidator } from "./lib/validators";
import * as Credits from "./model/credits";
import { refundJob, requireJob, settleJob } from "./model/jobs";
import { requirePlan, publicPlan } from "./model/plans";
import { pageOfUserRows } from "./lib/pagination";

/**
 * The caller's balance and plan. `credits` is what can be spent now; `reserved` is held by
 * unfinished jobs (it comes back if they fail). Another user's id: FORBIDDEN.
 */
export const getCredits = userQueryWithUserId({
  args: {},
  returns: v.object({ credits: v.number(), reserved: v.number(), plan: planValidator }),
  handler: async (ctx) => {
    const { user } = ctx;
    const plan = await requirePlan(ctx, user.plan);
    return { credits: user.credits, reserved: user.reservedCredits ?? 0, plan: publicPlan(plan) };
  },
});

/** The caller's ledger, newest first (works with `usePaginatedQuery`; pages of at most 100). */
export const listLedger = maybeUserQuery({
  args: { paginationOpts: paginationOptsValidator },
  returns: paginationResultValidator(doc(schema, "ledger")),
  handler: async (ctx, { paginationOpts }) =>
    await pageOfUserRows(ctx, "ledger", ctx.user, paginationOpts),
});

/**
 * Holds `credits` for the job (a `reserve` ledger row) if the balance covers them; otherwise
 * changes nothing and says so. A hold exists only with its job, so `jobId` is required and
 * `credits` must be its price. Jobs reserve through `jobs:createJob`, exactly once: passing a
 * job that already holds its reservation is a CONFLICT.
 */
export const reserveCredits = internalMutation({
  args: { userId: v.id("users"), credits: v.number(), jobId: v.id("jobs") },
  returns: v.union(
    v.object({ ok: v.literal(true), balance: v.number() }),
    v.object({
      ok: v.literal(false),
      reason: v.literal("INSUFFICIENT_CREDITS"),
      balance: v.number(),
    }),
  ),
  handler: async (ctx, { userId, credits, jobId }) =>
    await Credits.tryReserveJobCredits(
      ctx,
      await Credits.requireJobWithoutHold(ctx, userId, jobId, credits),
    ),
});

const creditOutcome = v.object({ changed: v.boolean(), creditStatus: creditStatusValidator });

/**
 * Makes a done job's reservation final. Idempotent: a job already settled or refunded is left
 * as it is. A job that is not done cannot be settled (INVALID_TRANSITION).
 */
export const settleCredits = internalMutation({
  args: { jobId: v.id("jobs") },
  returns: creditOutcome,
  handler: async (ctx, { jobId }) => await settleJob(ctx, await requireJob(ctx, jobId)),
});

/**
 * Returns a job's reservation and marks an unfinished job `failed`. Idempotent: a job already
 * settled or refunded is left as it is (a job is settled or refunded, never both).
 */
export const refundCredits = internalMutation({
  args: { jobId: v.id("jobs") },
  returns: creditOutcome,
  handler: async (ctx, { jobId }) => await refundJob(ctx, await requireJob(ctx, jobId)),
});

/**
 * Support and operators: adds (or, negative, removes) credits with an `adjustment` ledger row.
 * Never takes a balance below zero.
 */
export const grantCredits = internalMutation({
  args: { userId: v.id("users"), credits: v.number(), note: v.string() },
  returns: v.object({ balance: v.number() }),
  handler: async (ctx, { userId, credits, note }) => ({
    balance: await Credits.grantAdjustment(ctx, userId, credits, note),
  }),
});
