import { vOnEmailEventArgs } from "@convex-dev/resend";
import { v } from "convex/values";
import { components } from "./_generated/api";
import { DAY_MS } from "./model/calendar";
import { internalMutation, userMutation } from "./lib/functions";
import { sweepMutation } from "./lib/sweeps";
import { emailPreferencesValidator } from "./lib/validators";
import { applyEmailEvent, deliverNotice } from "./model/notices";
import { sweepExpiringCredits } from "./model/noticeTriggers";

/**
 * Email notices (docs/notices.md): the user's choice of optional notices, the hand-over of a
 * decided notice to the Resend component, its delivery events, and the daily credits-expiring
 * sweep. The notices themselves are decided by triggers (model/noticeTriggers.ts).
 */

/**
 * The caller's optional notices: `creditsExpiring: false` turns off the credits-expiring
 * reminders (receipts and payment notices always go). `users.me` shows the choice as
 * `emailPreferences` (absent: everything on).
 */
export const setEmailPreferences = userMutation({
  args: { creditsExpiring: v.boolean() },
  returns: emailPreferencesValidator,
  handler: async (ctx, { creditsExpiring }) => {
    const emailPreferences = { creditsExpiring };
    await ctx.db.patch("users", ctx.user._id, { emailPreferences });
    return emailPreferences;
  },
});

/** Scheduled by `sendNotice`: hands a queued notice's email to the Resend component. */
export const deliver = internalMutation({
  args: {
    noticeId: v.id("notices"),
    subject: v.string(),
    text: v.string(),
    html: v.string(),
  },
  returns: v.null(),
  handler: async (ctx, args) => {
    await deliverNotice(ctx, args);
    return null;
  },
});

/** The Resend component's `onEmailEvent`: a verified delivery event of one of our emails. */
export const onEmailEvent = internalMutation({
  args: vOnEmailEventArgs,
  returns: v.null(),
  handler: async (ctx, { id, event }) => {
    await applyEmailEvent(ctx, id, event);
    return null;
  },
});

/**
 * Daily cron: announces credits expiring within 3 days (a share of the plan's credits at
 * least; model/noticeTriggers.ts). Bounded steps that reschedule themselves while lots remain.
 */
export const sweepExpiringCreditNotices = sweepMutation({
  name: "notices:sweepExpiringCreditNotices",
  returns: v.object({ looked: v.number(), noticed: v.number(), more: v.boolean() }),
  batch: (ctx, now) => sweepExpiringCredits(ctx, now),
});

/**
 * Hourly cron: the Resend component's own clean-ups (its README's advice), each a bounded batch
 * that reschedules itself: emails finished (delivered, bounced...) over 7 days ago, and emails
 * that never finished over 4 weeks ago. The `notices` rows stay: they are the record.
 */
export const cleanupResendEmails = internalMutation({
  args: {},
  returns: v.null(),
  handler: async (ctx) => {
    await ctx.scheduler.runAfter(0, components.resend.lib.cleanupOldEmails, {
      olderThan: 7 * DAY_MS,
    });
    await ctx.scheduler.runAfter(0, components.resend.lib.cleanupAbandonedEmails, {
      olderThan: 28 * DAY_MS,
    });
    return null;
  },
});
