import { paginationOptsValidator, paginationResultValidator } from "convex/server";
import { v } from "convex/values";
import { doc } from "convex-helpers/validators";
import schema from "./schema";
import { sweepMutation } from "./lib/sweeps";
import { internalMutation, maybeUserQuery, userQueryWithUserId } from "./lib/functions";
import { planValidator, creditStatusValidator } from "./lib/validators";
import * as Credits from "./model/credits";
import { refundJob, requireJob, settleJob } from "./model/jobs";
import { requirePlan, publicPlan } from "./model/plans";
import { emptyPage, pageOfUserRows, pageOptions, paginateChecked } from "./lib/pagination";
import * as Lots from "./model/lots";
import { omit } from "convex-helpers";

/**
 * The caller's balance and plan. `credits` is what can be spent now; `reserved` is held by
 * unfinished jobs (it comes back if they fail); `expiring` is the next expiry of available
 * credits (`{ credits, at }`, or null when none expire). One read: all are cached on the user
 * row with every lot change. Another user's id: FORBIDDEN.
 */
export const getCredits = userQueryWithUserId({
  args: {},
  returns: v.object({
    credits: v.number(),
    reserved: v.number(),
    expiring: v.union(v.object({ credits: v.number(), at: v.number() }), v.null()),
    plan: planValidator,
  }),
  handler: async (ctx) => {
    const { user } = ctx;
    const plan = await requirePlan(ctx, user.plan);
    return {
      credits: user.credits,
      reserved: user.reservedCredits ?? 0,
      expiring: user.nextExpiry ?? null,
      plan: publicPlan(plan),
    };
  },
});

/** What the caller sees of a lot. */
const LOT_INTERNAL_FIELDS = ["sourceKey", "closed", "voidOnRelease"] as const;
const lotView = doc(schema, "creditLots").omit(...LOT_INTERNAL_FIELDS);

/**
 * The caller's credit lots, live ones first (oldest first within each group), pages of at most
 * 100 (`usePaginatedQuery`): where each credit came from, what is left, held and when it expires.
 */
export const listLots = maybeUserQuery({
  args: { paginationOpts: paginationOptsValidator },
  returns: paginationResultValidator(lotView),
  handler: async (ctx, { paginationOpts }) => {
    const page = pageOptions(paginationOpts);
    const { user } = ctx;
    if (user === null) {
      return emptyPage<never>();
    }
    const result = await paginateChecked(
      ctx.db.query("creditLots").withIndex("by_userId_and_closed", (q) => q.eq("userId", user._id)),
      page,
    );
    return {
      ...result,
      page: result.page.map((lot) => omit(lot, [...LOT_INTERNAL_FIELDS])),
    };
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
  args: {
    userId: v.id("users"),
    credits: v.number(),
    note: v.string(),
    /** Positive grants only: when the granted lot expires (ms); absent: never. */
    expiresAt: v.optional(v.number()),
  },
  returns: v.object({ balance: v.number() }),
  handler: async (ctx, { userId, credits, note, expiresAt }) => ({
    balance: await Credits.grantAdjustment(ctx, userId, credits, note, expiresAt),
  }),
});

/**
 * Scheduled at each lot's `expiresAt` when it is granted: expires it on time. Keyed by the
 * expiry it was scheduled for, so a stale or duplicate run (the lot expired, was spent, or the
 * sweep got there first) changes nothing.
 */
export const expireLot = internalMutation({
  args: { lotId: v.id("creditLots"), expiresAt: v.number() },
  returns: v.boolean(),
  handler: async (ctx, { lotId, expiresAt }) => {
    const lot = await ctx.db.get("creditLots", lotId);
    if (lot === null || lot.expiresAt !== expiresAt || lot.status !== "active") {
      return false;
    }
    return (await Lots.expireLot(ctx, lot, Date.now())).status === "expired";
  },
});

/**
 * Cron (every 10 minutes): expires any lot whose scheduled expiry was missed. One bounded batch
 * per transaction; it schedules itself again while a backlog remains.
 */
export const expireDueLots = sweepMutation({
  name: "credits:expireDueLots",
  returns: v.object({ expired: v.number(), more: v.boolean() }),
  batch: (ctx, now) => Lots.expireDueLots(ctx, now),
});
