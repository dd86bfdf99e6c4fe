import { v } from "convex/values";
import { doc } from "convex-helpers/validators";
import schema from "./schema";
import { appError } from "./lib/errors";
import { identityMutation, internalMutation, maybeUserQuery } from "./lib/functions";
import { planNameValidator } from "./lib/validators";
import { compPlan } from "./model/subscriptionChanges";
import * as Users from "./model/users";

const userDoc = doc(schema, "users");

/**
 * The caller's user, created on the first call (plan starter with its monthly credits).
 * `clerkId` must be the caller's own (the identity's subject); the email is updated if it changed.
 */
export const getOrCreateUser = identityMutation({
  args: { clerkId: v.string(), email: v.string() },
  returns: userDoc,
  handler: async (ctx, { clerkId, email }) => {
    if (ctx.identity.subject !== clerkId) {
      throw appError("FORBIDDEN", "clerkId does not match the signed-in user.");
    }
    return await Users.upsertUser(ctx, clerkId, email);
  },
});

/** The caller's user document, or null before `getOrCreateUser` has run. */
export const me = maybeUserQuery({
  args: {},
  returns: v.union(userDoc, v.null()),
  handler: async (ctx) => ctx.user,
});

/**
 * Operators: changes the user's plan now, without payment (a comp or support fix): a new
 * subscription period starts now with the new plan's lot, the old plan lot's unused credits are
 * converted, the change is recorded in `planChanges` (model/subscriptions.ts, `compPlan`).
 */
export const updateUserPlan = internalMutation({
  args: { userId: v.id("users"), planName: v.string() },
  returns: v.object({ changed: v.boolean(), plan: planNameValidator }),
  handler: async (ctx, { userId, planName }) => await compPlan(ctx, userId, planName),
});

/** Operators grant or revoke admin (metrics access): `npx convex run users:setRole`. */
export const setRole = internalMutation({
  args: { userId: v.id("users"), role: v.union(v.literal("admin"), v.null()) },
  returns: v.null(),
  handler: async (ctx, { userId, role }) => {
    const user = await ctx.db.get("users", userId);
    if (user === null) {
      throw appError("NOT_FOUND", "User not found.");
    }
    await ctx.db.patch("users", userId, { role: role ?? undefined });
    return null;
  },
});
