import { describe, expect, test } from "vitest";
import { api, internal } from "../convex/_generated/api";
import { expectCode, identityFor, newConvex, setup, signUp } from "./support/setup";

describe("users", () => {
  test("getOrCreateUser twice: one user, one grant, email updated", async () => {
    const t = await setup();
    const as = t.withIdentity(identityFor("user_1"));
    const first = await as.mutation(api.users.getOrCreateUser, {
      clerkId: "user_1",
      email: "a@example.com",
    });
    expect(first).toMatchObject({
      clerkId: "user_1",
      email: "a@example.com",
      plan: "starter",
      credits: 80,
    });
    const second = await as.mutation(api.users.getOrCreateUser, {
      clerkId: "user_1",
      email: "B@example.com ",
    });
    expect(second._id).toBe(first._id);
    expect(second.email).toBe("b@example.com");
    expect(second.credits).toBe(80);
    const { users, ledger } = await t.run(async (ctx) => ({
      users: await ctx.db.query("users").collect(),
      ledger: await ctx.db.query("ledger").collect(),
    }));
    expect(users).toHaveLength(1);
    expect(ledger).toMatchObject([
      { kind: "grant", delta: 80, balanceAfter: 80, userId: first._id },
    ]);
  });

  test("getOrCreateUser without identity is UNAUTHENTICATED, with another clerkId FORBIDDEN", async () => {
    const t = await setup();
    await expectCode(
      t.mutation(api.users.getOrCreateUser, { clerkId: "user_1", email: "a@example.com" }),
      "UNAUTHENTICATED",
    );
    await expectCode(
      t
        .withIdentity(identityFor("user_2"))
        .mutation(api.users.getOrCreateUser, { clerkId: "user_1", email: "a@example.com" }),
      "FORBIDDEN",
    );
    expect(await t.run(async (ctx) => await ctx.db.query("users").collect())).toHaveLength(0);
  });

  test.each([
    "",
    "no-at-sign",
    "a@b",
    "a b@example.com",
    "a@@example.com",
    `${"x".repeat(250)}@example.com`,
  ])("bad email %j is INVALID_ARGUMENT", async (email) => {
    const t = await setup();
    await expectCode(
      t
        .withIdentity(identityFor("user_1"))
        .mutation(api.users.getOrCreateUser, { clerkId: "user_1", email }),
      "INVALID_ARGUMENT",
    );
  });

  test("getOrCreateUser before plans are seeded is a clear NOT_FOUND", async () => {
    const t = newConvex();
    await expectCode(
      t
        .withIdentity(identityFor("user_1"))
        .mutation(api.users.getOrCreateUser, { clerkId: "user_1", email: "a@example.com" }),
      "NOT_FOUND",
    );
  });

  test("me returns the caller or null; no identity is UNAUTHENTICATED", async () => {
    const t = await setup();
    await expectCode(t.query(api.users.me, {}), "UNAUTHENTICATED");
    expect(await t.withIdentity(identityFor("user_1")).query(api.users.me, {})).toBeNull();
    const { as, userId } = await signUp(t, "user_1");
    expect(await as.query(api.users.me, {})).toMatchObject({ _id: userId, credits: 80 });
  });

  test("updateUserPlan comps the plan now, converting the old plan lot; same plan is a no-op", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "user_1");
    expect(await t.mutation(internal.users.updateUserPlan, { userId, planName: "studio" })).toEqual(
      { changed: true, plan: "studio" },
    );
    expect(await t.mutation(internal.users.updateUserPlan, { userId, planName: "studio" })).toEqual(
      { changed: false, plan: "studio" },
    );
    // Switching back and forth never piles up credits: each change converts the previous plan
    // lot's unused credits, so only the welcome lot and the current plan's lot remain.
    for (let i = 0; i < 3; i++) {
      await t.mutation(internal.users.updateUserPlan, { userId, planName: "starter" });
      await t.mutation(internal.users.updateUserPlan, { userId, planName: "creator" });
    }
    expect(await as.query(api.users.me, {})).toMatchObject({ plan: "creator", credits: 80 + 250 });
    const { changes, ledger } = await t.run(async (ctx) => ({
      changes: await ctx.db.query("planChanges").collect(),
      ledger: await ctx.db.query("ledger").collect(),
    }));
    expect(changes.map((c) => [c.from, c.to])).toEqual([
      ["starter", "studio"],
      ["studio", "starter"],
      ["starter", "creator"],
      ["creator", "starter"],
      ["starter", "creator"],
      ["creator", "starter"],
      ["starter", "creator"],
    ]);
    expect(ledger.filter((row) => row.kind === "plan_change").every((row) => row.delta === 0)).toBe(
      true,
    );
    expect(ledger.reduce((sum, row) => sum + row.delta, 0)).toBe(80 + 250);
  });

  test("updateUserPlan with an unknown plan is NOT_FOUND and changes nothing", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "user_1");
    await expectCode(
      t.mutation(internal.users.updateUserPlan, { userId, planName: "enterprise" }),
      "NOT_FOUND",
    );
    expect(await as.query(api.users.me, {})).toMatchObject({ plan: "starter" });
  });

  test("setRole grants and revokes admin", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "user_1");
    await t.mutation(internal.users.setRole, { userId, role: "admin" });
    expect(await as.query(api.users.me, {})).toMatchObject({ role: "admin" });
    await t.mutation(internal.users.setRole, { userId, role: null });
    expect((await as.query(api.users.me, {}))?.role).toBeUndefined();
  });
});
