import type { UserIdentity } from "convex/server";
import type { Doc } from "../_generated/dataModel";
import type { ActionCtx, QueryCtx } from "../_generated/server";
import { appError } from "./errors";

/** The signed-in caller's identity (Clerk: `subject` is the clerkId), or UNAUTHENTICATED. */
export async function requireIdentity(
  ctx: Pick<QueryCtx | ActionCtx, "auth">,
): Promise<UserIdentity> {
  const identity = await ctx.auth.getUserIdentity();
  if (identity === null) {
    throw appError("UNAUTHENTICATED", "Sign in to do this.");
  }
  return identity;
}

export async function findUserByClerkId(
  ctx: QueryCtx,
  clerkId: string,
): Promise<Doc<"users"> | null> {
  return await ctx.db
    .query("users")
    .withIndex("by_clerkId", (q) => q.eq("clerkId", clerkId))
    .unique();
}

/**
 * The caller's user row, or null when the identity has not called
 * `users:getOrCreateUser` yet. A deleted account can no longer act: FORBIDDEN.
 */
export async function getCallerUser(ctx: QueryCtx): Promise<Doc<"users"> | null> {
  const identity = await requireIdentity(ctx);
  const user = await findUserByClerkId(ctx, identity.subject);
  if (user?.deletedAt !== undefined) {
    throw appError("FORBIDDEN", "This account has been deleted.");
  }
  return user;
}

/** The caller's user row; NOT_FOUND when it has not been created yet. */
export async function requireCallerUser(ctx: QueryCtx): Promise<Doc<"users">> {
  const user = await getCallerUser(ctx);
  if (user === null) {
    throw appError("NOT_FOUND", "No user for this identity yet: call users:getOrCreateUser first.");
  }
  return user;
}

/** Admins are users with `role: "admin"` (set by operators with `users:setRole`). */
export async function requireAdmin(ctx: QueryCtx): Promise<Doc<"users">> {
  const user = await requireCallerUser(ctx);
  if (user.role !== "admin") {
    throw appError("FORBIDDEN", "Only admins can do this.");
  }
  return user;
}
