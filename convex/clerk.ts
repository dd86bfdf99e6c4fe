import { v } from "convex/values";
import { literals } from "convex-helpers/validators";
import { isAppError } from "./lib/errors";
import { webhookOutcomeValidator } from "./lib/validators";
import { isWebhookEventRecorded, recordWebhookEvent } from "./model/webhookEvents";
import { anonymiseUser, findUserByClerkId, upsertUser } from "./model/users";
import { cancelForDeletedUser } from "./model/subscriptionChanges";
import { endMandateForDeletedUser } from "./model/mandates";
import { internalMutation } from "./lib/functions";

/**
 * Applies one verified Clerk webhook event (the Svix message id is the event id), once:
 * `user.created` / `user.updated` go through `upsertUser`, the same code as
 * `users:getOrCreateUser`, so webhook and client together make one user with one grant;
 * `user.deleted` anonymises the user (ledger, jobs and payments stay for accounting) and ends
 * their subscription and their mandate at once.
 */
export const applyClerkEvent = internalMutation({
  args: {
    eventId: v.string(),
    type: literals("user.created", "user.updated", "user.deleted"),
    clerkId: v.string(),
    email: v.optional(v.string()),
  },
  returns: webhookOutcomeValidator,
  handler: async (ctx, { eventId, type, clerkId, email }) => {
    if (await isWebhookEventRecorded(ctx, "clerk", eventId)) {
      return { outcome: "duplicate" as const, message: `Event ${eventId} was already processed.` };
    }
    await recordWebhookEvent(ctx, "clerk", eventId, type);
    if (type === "user.deleted") {
      const changed = await anonymiseUser(ctx, clerkId);
      const user = changed ? await findUserByClerkId(ctx, clerkId) : null;
      if (user !== null) {
        // No renewal is created or charged for a deleted user.
        await cancelForDeletedUser(ctx, user._id);
        // Nor is any consent left to charge them: their mandate is revoked or ended.
        await endMandateForDeletedUser(ctx, user._id);
      }
      return changed
        ? { outcome: "applied" as const, message: `User ${clerkId} anonymised.` }
        : { outcome: "ignored" as const, message: `No active user ${clerkId}.` };
    }
    if (email === undefined) {
      return { outcome: "ignored" as const, message: `User ${clerkId} has no email address.` };
    }
    try {
      // upsertUser validates (and refuses deleted accounts) before it writes anything.
      const user = await upsertUser(ctx, clerkId, email);
      return { outcome: "applied" as const, message: `User ${clerkId} is ${user._id}.` };
    } catch (error) {
      // A bad email or a deleted account will not get better on retry; anything else (plans
      // not seeded) throws, so Clerk retries the delivery later.
      if (isAppError(error) && ["INVALID_ARGUMENT", "FORBIDDEN"].includes(error.data.code)) {
        return { outcome: "ignored" as const, message: error.data.message };
      }
      throw error;
    }
  },
});
