import { v } from "convex/values";
import { query } from "./_generated/server";
import { planValidator } from "./lib/validators";
import * as Plans from "./model/plans";
import { internalMutation } from "./lib/functions";

/** All plans, cheapest first. No sign-in needed: the pricing page calls it. */
export const listPlans = query({
  args: {},
  returns: v.array(planValidator),
  handler: async (ctx) => {
    // Three rows by design; `take` keeps the read bounded even if someone adds many.
    const plans = await ctx.db.query("plans").take(100);
    return plans.map(Plans.publicPlan).sort((a, b) => a.price - b.price);
  },
});

/** One plan by name, or null. */
export const getPlan = query({
  args: { name: v.string() },
  returns: v.union(planValidator, v.null()),
  handler: async (ctx, { name }) => {
    const plan = await Plans.findPlan(ctx, name);
    return plan === null ? null : Plans.publicPlan(plan);
  },
});

/**
 * Installs the plan catalog; idempotent (existing plans are brought up to date, never
 * duplicated). `npm run dev` runs it on start.
 */
export const seedPlans = internalMutation({
  args: {},
  returns: v.object({ inserted: v.number(), updated: v.number() }),
  handler: async (ctx) => {
    let inserted = 0;
    let updated = 0;
    for (const entry of Plans.PLAN_CATALOG) {
      const existing = await Plans.findPlan(ctx, entry.name);
      if (existing === null) {
        await ctx.db.insert("plans", { ...entry });
        inserted++;
      } else if (
        existing.monthlyCredits !== entry.monthlyCredits ||
        existing.price !== entry.price ||
        existing.markup !== entry.markup
      ) {
        await ctx.db.patch("plans", existing._id, { ...entry });
        updated++;
      }
    }
    return { inserted, updated };
  },
});
