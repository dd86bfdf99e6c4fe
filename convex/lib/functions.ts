import { v } from "convex/values";
import {
  customAction,
  customCtx,
  customCtxAndArgs,
  customMutation,
  customQuery,
} from "convex-helpers/server/customFunctions";
import type { UserIdentity } from "convex/server";
import type { Doc, Id } from "../_generated/dataModel";
import {
  action,
  internalMutation as rawInternalMutation,
  mutation as rawMutation,
  query,
  type ActionCtx,
  type QueryCtx,
} from "../_generated/server";
import { findUserByClerkId, requireActiveUserByClerkId } from "../model/users";
import { appError } from "./errors";
import { withTriggers } from "./triggers";

/**
 * Builders for public functions that resolve the caller once, before the handler runs (the
 * pattern of convex-helpers' customFunctions). The caller always comes from
 * `ctx.auth.getUserIdentity()` (Clerk: `subject` is the clerkId), never from arguments, and the
 * access rules live here only:
 *
 * - no identity: UNAUTHENTICATED; a deleted account: FORBIDDEN (every builder below);
 * - `user*`: `ctx.user` is the caller's row; no row yet (before `users:getOrCreateUser`): NOT_FOUND;
 * - `maybeUser*`: `ctx.user` is the caller's row or null;
 * - `*WithUserId`: also take the seed's optional `userId` argument, which must be the caller's
 *   own id (FORBIDDEN otherwise, also when the caller has no row);
 * - `admin*`: the caller must be an admin (FORBIDDEN otherwise);
 * - `identity*`: only the identity, for functions that run before a user row exists.
 *
 * Every mutation, public or internal, is built on `mutation` / `internalMutation` below: they
 * run the database triggers of lib/triggers.ts on every write, and read each document by id
 * at most once per transaction.
 */

export const mutation = customMutation(rawMutation, customCtx(withTriggers));
export const internalMutation = customMutation(rawInternalMutation, customCtx(withTriggers));

/** The signed-in caller's identity (Clerk: `subject` is the clerkId), or UNAUTHENTICATED. */
async function requireIdentity(ctx: Pick<QueryCtx | ActionCtx, "auth">): Promise<UserIdentity> {
  const identity = await ctx.auth.getUserIdentity();
  if (identity === null) {
    throw appError("UNAUTHENTICATED", "Sign in to do this.");
  }
  return identity;
}

/** The caller's row, or null before `users:getOrCreateUser`; a deleted account: FORBIDDEN. */
async function getCallerUser(ctx: QueryCtx): Promise<Doc<"users"> | null> {
  const identity = await requireIdentity(ctx);
  const user = await findUserByClerkId(ctx, identity.subject);
  if (user?.deletedAt !== undefined) {
    throw appError("FORBIDDEN", "This account has been deleted.");
  }
  return user;
}

async function requireCallerUser(ctx: QueryCtx): Promise<Doc<"users">> {
  return await requireActiveUserByClerkId(ctx, (await requireIdentity(ctx)).subject);
}

/** Admins are users with `role: "admin"` (set by operators with `users:setRole`). */
async function requireAdmin(ctx: QueryCtx): Promise<Doc<"users">> {
  const user = await requireCallerUser(ctx);
  if (user.role !== "admin") {
    throw appError("FORBIDDEN", "Only admins can do this.");
  }
  return user;
}

/** The seed's calls name the user (`getCredits(userId)`); it may only be the caller's own id. */
const legacyUserIdArgs = { userId: v.optional(v.id("users")) };

function assertOwnUserId(user: Doc<"users"> | null, userId: Id<"users"> | undefined): void {
  if (userId !== undefined && userId !== user?._id) {
    throw appError("FORBIDDEN", "You can only act on your own account.");
  }
}

const signedUpUser = customCtx(async (ctx: QueryCtx) => ({ user: await requireCallerUser(ctx) }));
const maybeUser = customCtx(async (ctx: QueryCtx) => ({ user: await getCallerUser(ctx) }));

const signedUpUserWithUserId = customCtxAndArgs({
  args: legacyUserIdArgs,
  input: async (ctx: QueryCtx, { userId }) => {
    const user = await requireCallerUser(ctx);
    assertOwnUserId(user, userId);
    return { ctx: { user }, args: {} };
  },
});

const maybeUserWithUserId = customCtxAndArgs({
  args: legacyUserIdArgs,
  input: async (ctx: QueryCtx, { userId }) => {
    const user = await getCallerUser(ctx);
    assertOwnUserId(user, userId);
    return { ctx: { user }, args: {} };
  },
});

export const userQuery = customQuery(query, signedUpUser);
export const userMutation = customMutation(mutation, signedUpUser);
export const userQueryWithUserId = customQuery(query, signedUpUserWithUserId);
export const userMutationWithUserId = customMutation(mutation, signedUpUserWithUserId);
export const maybeUserQuery = customQuery(query, maybeUser);
export const maybeUserQueryWithUserId = customQuery(query, maybeUserWithUserId);
export const adminQuery = customQuery(
  query,
  customCtx(async (ctx: QueryCtx) => ({ user: await requireAdmin(ctx) })),
);
export const identityMutation = customMutation(
  mutation,
  customCtx(async (ctx) => ({ identity: await requireIdentity(ctx) })),
);
export const identityAction = customAction(
  action,
  customCtx(async (ctx) => ({ identity: await requireIdentity(ctx) })),
);
