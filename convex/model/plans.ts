import type { Doc } from "../_generated/dataModel";
import type { QueryCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import { trueLayerCurrency } from "../lib/truelayer";
import type { PlanName } from "../lib/validators";

/**
 * The plans `plans:seedPlans` installs: price in minor units of the currency checkouts charge in
 * (`TRUELAYER_CURRENCY`, GBP pence by default), markup in percent.
 */
export const PLAN_CATALOG: ReadonlyArray<{
  name: PlanName;
  monthlyCredits: number;
  price: number;
  markup: number;
}> = [
  { name: "starter", monthlyCredits: 80, price: 1000, markup: 85 },
  { name: "creator", monthlyCredits: 250, price: 3100, markup: 75 },
  { name: "studio", monthlyCredits: 500, price: 6000, markup: 70 },
];

export const DEFAULT_PLAN: PlanName = "starter";

/** Whether `name` is one of the catalog's plan names. */
export function isPlanName(name: string): name is PlanName {
  return PLAN_CATALOG.some((plan) => plan.name === name);
}

/** NOT_FOUND unless `name` is a catalog plan name (checked without reading the database). */
export function assertPlanName(name: string): asserts name is PlanName {
  if (!isPlanName(name)) {
    throw appError("NOT_FOUND", `Unknown plan "${name.slice(0, 64)}".`);
  }
}

export async function findPlan(ctx: QueryCtx, name: string): Promise<Doc<"plans"> | null> {
  // Only catalog names can exist: anything else (a 10 MB string, "__proto__") is not looked up.
  if (!isPlanName(name)) {
    return null;
  }
  return await ctx.db
    .query("plans")
    .withIndex("by_name", (q) => q.eq("name", name))
    .unique();
}

export async function requirePlan(ctx: QueryCtx, name: string): Promise<Doc<"plans">> {
  assertPlanName(name);
  const plan = await findPlan(ctx, name);
  if (plan === null) {
    throw appError("NOT_FOUND", `Plan "${name}" is not seeded yet: run plans:seedPlans.`);
  }
  return plan;
}

/** A plan as clients see it, with the currency its `price` is charged in. */
export function publicPlan(plan: Doc<"plans">) {
  return {
    name: plan.name,
    monthlyCredits: plan.monthlyCredits,
    price: plan.price,
    currency: trueLayerCurrency(),
    markup: plan.markup,
  };
}
