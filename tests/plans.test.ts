import { describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import { newConvex, setup } from "./support/setup";

describe("plans", () => {
  test("seedPlans twice leaves exactly the three plans", async () => {
    const t = newConvex();
    expect(await t.mutation(internal.plans.seedPlans, {})).toEqual({ inserted: 3, updated: 0 });
    expect(await t.mutation(internal.plans.seedPlans, {})).toEqual({ inserted: 0, updated: 0 });
    const rows = await t.run(async (ctx) => await ctx.db.query("plans").collect());
    expect(rows).toHaveLength(3);
  });

  test("listPlans needs no sign-in and is ordered by price", async () => {
    const t = await setup();
    expect(await t.query(api.plans.listPlans, {})).toEqual([
      { name: "starter", monthlyCredits: 80, price: 1000, currency: "GBP", markup: 85 },
      { name: "creator", monthlyCredits: 250, price: 3100, currency: "GBP", markup: 75 },
      { name: "studio", monthlyCredits: 500, price: 6000, currency: "GBP", markup: 70 },
    ]);
  });

  test("prices are in the currency checkouts charge in (TRUELAYER_CURRENCY)", async () => {
    const t = await setup();
    vi.stubEnv("TRUELAYER_CURRENCY", "eur");
    try {
      expect(await t.query(api.plans.getPlan, { name: "creator" })).toMatchObject({
        price: 3100,
        currency: "EUR",
      });
    } finally {
      vi.unstubAllEnvs();
    }
  });

  test("getPlan returns the plan or null", async () => {
    const t = await setup();
    expect(await t.query(api.plans.getPlan, { name: "creator" })).toMatchObject({
      monthlyCredits: 250,
    });
    expect(await t.query(api.plans.getPlan, { name: "enterprise" })).toBeNull();
  });

  test("seedPlans repairs a plan whose numbers drifted", async () => {
    const t = await setup();
    await t.run(async (ctx) => {
      const plan = (await ctx.db
        .query("plans")
        .withIndex("by_name", (q) => q.eq("name", "studio"))
        .unique())!;
      await ctx.db.patch("plans", plan._id, { price: 1 });
    });
    expect(await t.mutation(internal.plans.seedPlans, {})).toEqual({ inserted: 0, updated: 1 });
    expect(await t.query(api.plans.getPlan, { name: "studio" })).toMatchObject({ price: 6000 });
  });
});
