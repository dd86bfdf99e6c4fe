import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import { hasInvisibleOrControlCharacters } from "../lib/text";
import type { PlanName } from "../lib/validators";
import { applyCreditChange } from "./ledger";
import { grantLot } from "./lots";
import { recordUserActivity } from "./metricsRollups";
import { DEFAULT_PLAN, requirePlan } from "./plans";

export async function findUserByClerkId(
  ctx: QueryCtx,
  clerkId: string,
): Promise<Doc<"users"> | null> {
  return await ctx.db
    .query("users")
    .withIndex("by_clerkId", (q) => q.eq("clerkId", clerkId))
    .unique();
}

/** The user for `clerkId`, able to act: NOT_FOUND without a row, FORBIDDEN once deleted. */
export async function requireActiveUserByClerkId(
  ctx: QueryCtx,
  clerkId: string,
): Promise<Doc<"users">> {
  const user = await findUserByClerkId(ctx, clerkId);
  if (user === null) {
    throw appError("NOT_FOUND", "No user for this identity yet: call users:getOrCreateUser first.");
  }
  if (user.deletedAt !== undefined) {
    throw appError("FORBIDDEN", "This account has been deleted.");
  }
  return user;
}

const EMAIL_MAX_LENGTH = 254;
// Deliberately simple: one "@", no spaces, a dot in the domain. Clerk has verified the address.
const EMAIL_PATTERN = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

export function normaliseEmail(email: string): string {
  const trimmed = email.trim().toLowerCase();
  if (
    trimmed.length > EMAIL_MAX_LENGTH ||
    !EMAIL_PATTERN.test(trimmed) ||
    // NUL, zero-width or bidi characters make look-alike addresses; unpaired surrogates are not text.
    hasInvisibleOrControlCharacters(trimmed)
  ) {
    throw appError("INVALID_ARGUMENT", "email must be a valid email address.");
  }
  return trimmed;
}

export function validateClerkId(clerkId: string): void {
  if (
    clerkId.length === 0 ||
    clerkId.length > 256 ||
    clerkId.trim() !== clerkId ||
    hasInvisibleOrControlCharacters(clerkId)
  ) {
    throw appError(
      "INVALID_ARGUMENT",
      "clerkId must be a non-empty id without spaces or control characters.",
    );
  }
}

/**
 * The user for `clerkId`, created on first sight (plan starter, the starter plan's credits as a
 * `grant` ledger row). Used by `users:getOrCreateUser` and the Clerk webhook, so whichever
 * arrives first creates the user and the other finds it: one user, one grant. Signing in again
 * counts as activity for the "active users" metric (`recordUserActivity`; a new user is counted
 * by the trigger on `users`).
 */
export async function upsertUser(
  ctx: MutationCtx,
  clerkId: string,
  rawEmail: string,
): Promise<Doc<"users">> {
  validateClerkId(clerkId);
  const email = normaliseEmail(rawEmail);
  const existing = await findUserByClerkId(ctx, clerkId);
  if (existing !== null) {
    if (existing.deletedAt !== undefined) {
      throw appError("FORBIDDEN", "This account has been deleted.");
    }
    const activity = await recordUserActivity(ctx, existing);
    if (existing.email !== email) {
      await ctx.db.patch("users", existing._id, { email });
    }
    return { ...existing, ...activity, email };
  }
  const plan = await requirePlan(ctx, DEFAULT_PLAN);
  const userId = await ctx.db.insert("users", {
    clerkId,
    email,
    plan: plan.name,
    credits: 0,
    createdAt: Date.now(),
  });
  // The welcome lot never expires.
  await grantLot(ctx, userId, {
    kind: "grant",
    source: "welcome",
    credits: plan.monthlyCredits,
    sourceKey: `welcome:${userId}`,
    note: `Sign-up grant (${plan.name} plan)`,
  });
  const created = (await ctx.db.get("users", userId))!;
  return created;
}

/**
 * Moves a user to another plan. The allocation rule: a plan change moves no credits. Credits
 * arrive only with the sign-up grant and with each paid purchase of a plan (`purchase` rows),
 * so switching back and forth can never mint credits, and a downgrade never takes away credits
 * already paid for. The change is recorded as a `planChanges` row and a zero-delta
 * `plan_change` ledger row, and counts as activity (the user's active-user count moves to the
 * new plan). Changing to the current plan does nothing.
 */
export async function changePlan(
  ctx: MutationCtx,
  userId: Id<"users">,
  planName: string,
): Promise<{ changed: boolean; plan: PlanName }> {
  const plan = await requirePlan(ctx, planName);
  const user = await ctx.db.get("users", userId);
  if (user === null) {
    throw appError("NOT_FOUND", "User not found.");
  }
  if (user.plan === plan.name) {
    return { changed: false, plan: plan.name };
  }
  await ctx.db.patch("users", userId, { plan: plan.name });
  await ctx.db.insert("planChanges", {
    userId,
    from: user.plan,
    to: plan.name,
    createdAt: Date.now(),
  });
  await applyCreditChange(ctx, userId, {
    delta: 0,
    kind: "plan_change",
    note: `Plan ${user.plan} -> ${plan.name}`,
  });
  return { changed: true, plan: plan.name };
}

/**
 * Clerk deleted the user: personal data goes, the row stays so the ledger, jobs and payments
 * still add up. A deleted user can no longer act (see `getCallerUser`). A deletion that arrives
 * before the user was ever created here (webhooks can be reordered) leaves a tombstone: an
 * anonymised row with no credits, so a late `user.created` or sign-up cannot bring it back.
 */
export async function anonymiseUser(ctx: MutationCtx, clerkId: string): Promise<boolean> {
  const user = await findUserByClerkId(ctx, clerkId);
  if (user?.deletedAt !== undefined) {
    return false;
  }
  const now = Date.now();
  if (user === null) {
    const userId = await ctx.db.insert("users", {
      clerkId,
      email: "deleted@deleted.invalid",
      plan: DEFAULT_PLAN,
      credits: 0,
      createdAt: now,
      deletedAt: now,
    });
    await ctx.db.patch("users", userId, { email: `deleted+${userId}@deleted.invalid` });
    return true;
  }
  await ctx.db.patch("users", user._id, {
    email: `deleted+${user._id}@deleted.invalid`,
    deletedAt: now,
  });
  return true;
}
