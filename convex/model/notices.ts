import { Resend, type EmailEvent, type EmailId } from "@convex-dev/resend";
import { components, internal } from "../_generated/api";
import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { renderNotice, type NoticeData } from "../lib/noticeTemplates";
import type { NoticeKind, NoticeStatus } from "../lib/validators";

/**
 * Email notices (docs/notices.md). `sendNotice` is the one way a notice goes out: keyed by
 * (user, kind, key), it decides once — in the transaction of the change the notice is about —
 * whether the email goes, records that in `notices`, and hands the email to the Resend component
 * in a mutation of its own (`notices:deliver`), so a payment webhook or a period end never
 * touches the component's documents nor fails because of it. Resend's delivery webhook then
 * moves the row's status (`applyEmailEvent`).
 */

/** Notices a user can turn off (`users.emailPreferences`); the rest are about their money. */
export const OPTIONAL_NOTICE_KINDS: readonly NoticeKind[] = ["credits_expiring"];

export type EmailConfig = { apiKey: string; from: string; testMode: boolean };

/** Whether the missing email settings were logged by this instance (once per cold start). */
let loggedUnconfigured = false;

/**
 * RESEND_API_KEY and EMAIL_FROM, or null when either is unset (logged once per cold start).
 * Test mode (the component only sends to Resend's test addresses) unless RESEND_TEST_MODE is
 * "false": production deployments set it so.
 */
export function emailConfig(): EmailConfig | null {
  const apiKey = process.env.RESEND_API_KEY ?? "";
  const from = process.env.EMAIL_FROM ?? "";
  if (apiKey === "" || from === "") {
    if (!loggedUnconfigured) {
      loggedUnconfigured = true;
      console.warn("Email notices are not sent: RESEND_API_KEY and EMAIL_FROM must both be set.");
    }
    return null;
  }
  return { apiKey, from, testMode: process.env.RESEND_TEST_MODE !== "false" };
}

/** The component's client, configured from the environment as it is now. */
export function resendClient(config: Pick<EmailConfig, "apiKey" | "testMode"> | null) {
  return new Resend(components.resend, {
    apiKey: config?.apiKey,
    testMode: config?.testMode,
    webhookSecret: process.env.RESEND_WEBHOOK_SECRET ?? "",
    onEmailEvent: internal.notices.onEmailEvent,
  });
}

/** Resend's test recipients (delivered@, bounced@, complained@resend.dev, with +labels). */
export function isResendTestAddress(email: string): boolean {
  return /^(delivered|bounced|complained)(\+[^@]*)?@resend\.dev$/.test(email);
}

export async function findNotice(
  ctx: MutationCtx,
  userId: Id<"users">,
  kind: NoticeKind,
  key: string,
): Promise<Doc<"notices"> | null> {
  return await ctx.db
    .query("notices")
    .withIndex("by_userId_and_kind_and_key", (q) =>
      q.eq("userId", userId).eq("kind", kind).eq("key", key),
    )
    .first();
}

/**
 * Sends `data` to the user once per `key`: a second call with the same (user, kind, key) does
 * nothing. Not sent (recorded `not_sent` with the reason) to a deleted account, an optional kind
 * the user turned off, without the email settings, or in test mode to an address Resend's test
 * mode would refuse. Reads the key's index entry and the user (cached when the caller read it).
 */
export async function sendNotice(
  ctx: MutationCtx,
  userId: Id<"users">,
  key: string,
  data: NoticeData,
): Promise<Id<"notices"> | null> {
  if ((await findNotice(ctx, userId, data.kind, key)) !== null) {
    return null;
  }
  const user = await ctx.db.get("users", userId);
  if (user === null) {
    return null;
  }
  const { subject, text, html } = renderNotice(data);
  const config = notSentReason(user, data.kind);
  const now = Date.now();
  const noticeId = await ctx.db.insert("notices", {
    userId,
    kind: data.kind,
    key,
    subject,
    status: typeof config === "string" ? "not_sent" : "queued",
    reason: typeof config === "string" ? config : undefined,
    createdAt: now,
    updatedAt: now,
  });
  if (typeof config !== "string") {
    await ctx.scheduler.runAfter(0, internal.notices.deliver, { noticeId, subject, text, html });
  }
  return noticeId;
}

function notSentReason(user: Doc<"users">, kind: NoticeKind): EmailConfig | string {
  if (user.deletedAt !== undefined) {
    return "account deleted";
  }
  if (OPTIONAL_NOTICE_KINDS.includes(kind) && user.emailPreferences?.creditsExpiring === false) {
    return "turned off by the user";
  }
  const config = emailConfig();
  if (config === null) {
    return "email not configured (RESEND_API_KEY, EMAIL_FROM)";
  }
  if (config.testMode && !isResendTestAddress(user.email)) {
    return "test mode: not a Resend test address";
  }
  return config;
}

/**
 * Hands a queued notice's email to the Resend component (scheduled by `sendNotice`; keyed by
 * the notice: a notice already handed over, or no longer queued, is left alone), to the user's
 * address as it is now; an account deleted meanwhile gets nothing. The component's own
 * idempotency key is the notice id too.
 */
export async function deliverNotice(
  ctx: MutationCtx,
  args: { noticeId: Id<"notices">; subject: string; text: string; html: string },
): Promise<void> {
  const notice = await ctx.db.get("notices", args.noticeId);
  if (notice?.status !== "queued" || notice.emailId !== undefined) {
    return;
  }
  const user = await ctx.db.get("users", notice.userId);
  const config = user === null ? "account deleted" : notSentReason(user, notice.kind);
  if (typeof config === "string") {
    await setStatus(ctx, notice, "not_sent", config);
    return;
  }
  try {
    const emailId = await resendClient(config).sendEmail(ctx, {
      from: config.from,
      to: user!.email,
      subject: args.subject,
      text: args.text,
      html: args.html,
      idempotencyKey: `notice:${notice._id}`,
    });
    await ctx.db.patch("notices", notice._id, { emailId, updatedAt: Date.now() });
  } catch (error) {
    // The component refused it (its writes are rolled back): recorded, not retried.
    const reason = error instanceof Error ? error.message : String(error);
    console.error(`Notice ${notice._id} could not be handed to Resend: ${reason}`);
    await setStatus(ctx, notice, "failed", reason.slice(0, 500));
  }
}

/** How far along each status is: a late or replayed event never moves a notice back. */
const STATUS_RANK: Record<NoticeStatus, number> = {
  not_sent: 0,
  queued: 0,
  sent: 1,
  delivered: 2,
  bounced: 3,
  complained: 3,
  failed: 3,
};

const EVENT_STATUS: Partial<Record<EmailEvent["type"], NoticeStatus>> = {
  "email.sent": "sent",
  "email.delivered": "delivered",
  "email.bounced": "bounced",
  "email.complained": "complained",
  "email.failed": "failed",
};

/**
 * A delivery event of Resend's webhook, after the component verified and recorded it (its
 * `onEmailEvent`): the notice of that email moves to the status the event says, forward only.
 * Opens, clicks and delays change nothing.
 */
export async function applyEmailEvent(ctx: MutationCtx, emailId: EmailId, event: EmailEvent) {
  const status = EVENT_STATUS[event.type];
  if (status === undefined) return;
  const notice = await ctx.db
    .query("notices")
    .withIndex("by_emailId", (q) => q.eq("emailId", emailId))
    .first();
  if (notice === null || STATUS_RANK[status] <= STATUS_RANK[notice.status]) return;
  const reason =
    event.type === "email.bounced"
      ? event.data.bounce.message
      : event.type === "email.failed"
        ? event.data.failed.reason
        : undefined;
  await setStatus(ctx, notice, status, reason?.slice(0, 500));
}

async function setStatus(
  ctx: MutationCtx,
  notice: Doc<"notices">,
  status: NoticeStatus,
  reason?: string,
) {
  await ctx.db.patch("notices", notice._id, { status, reason, updatedAt: Date.now() });
}
