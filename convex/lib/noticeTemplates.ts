import type { NoticeKind, PlanName } from "./validators";
import { isHttpsUrl } from "./urls";

/**
 * The email notices' words, text and HTML (docs/notices.md). Pure: each notice is rendered from
 * the data its trigger passes, all of it the recipient's own (their plan, amounts, dates, their
 * pay link); nothing here reads the database. Every value put into HTML is escaped, and a link
 * is only ever an https URL.
 */

export type NoticeData =
  | {
      kind: "renewal_coming";
      plan: PlanName;
      amount: number;
      currency: string;
      dueAt: number;
      /** Manual renewals: TrueLayer's page to pay on; null: charged on the user's mandate. */
      payUrl: string | null;
      /** Set when the period already ended unpaid (past_due): pay by then, or it ends. */
      graceEndsAt?: number;
      /** A manual renewal of a user whose mandate could not take it (`renewal.fallbackReason`). */
      mandateFallback?: boolean;
    }
  | {
      kind: "renewal_paid";
      plan: PlanName;
      amount: number;
      currency: string;
      paidAt: number;
      /** Our payment id: what support looks the receipt up by. */
      reference: string;
    }
  | {
      kind: "renewal_failed";
      plan: PlanName;
      graceEndsAt: number;
      payUrl: string | null;
      /** The next charge on the user's mandate in the grace (dunning), if one is due. */
      retryAt: number | null;
    }
  | { kind: "subscription_canceled"; plan: PlanName; canceledAt: number; unpaid: boolean }
  | { kind: "auto_renewal_set_up"; maxAmount: number; currency: string }
  /** `failed`: the bank or TrueLayer ended it, rather than the user. */
  | { kind: "auto_renewal_revoked"; failed: boolean }
  | { kind: "credits_expiring"; credits: number; expiresAt: number };

export type RenderedNotice = { subject: string; text: string; html: string };

/** A line of the email: plain text, or a link (kept only if it is an https URL). */
type Line = string | { link: string; label: string };

export function escapeHtml(value: string): string {
  return value
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/** Minor units as e.g. "29.00 GBP" (TrueLayer's currencies all have two decimals). */
export function formatAmount(amount: number, currency: string): string {
  return `${(amount / 100).toFixed(2)} ${currency}`;
}

/** A moment as e.g. "3 March 2026, 14:05 UTC". */
export function formatDate(ms: number): string {
  const d = new Date(ms);
  const months = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
  ];
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getUTCDate()} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()}, ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`;
}

const planLabel = (plan: PlanName) => plan.charAt(0).toUpperCase() + plan.slice(1);

function compose(kind: NoticeKind, data: NoticeData): { subject: string; lines: Line[] } {
  switch (data.kind) {
    case "renewal_coming": {
      const price = formatAmount(data.amount, data.currency);
      const plan = planLabel(data.plan);
      if (data.payUrl !== null && data.graceEndsAt !== undefined) {
        // Made on the hosted page in the grace (the mandate ended): the period is already due.
        return {
          subject: `Pay for your ${plan} subscription by ${formatDate(data.graceEndsAt)}`,
          lines: [
            `The renewal of your CineWeave ${plan} subscription, due on ${formatDate(data.dueAt)}, is unpaid: ${price}.`,
            { link: data.payUrl, label: "Pay for the month" },
            `Unpaid on ${formatDate(data.graceEndsAt)}, your subscription ends.`,
          ],
        };
      }
      return data.payUrl === null
        ? {
            subject: `Your ${plan} subscription renews on ${formatDate(data.dueAt)}`,
            lines: [
              `Your CineWeave ${plan} subscription renews on ${formatDate(data.dueAt)}.`,
              `We will charge ${price} to the bank account you set up for automatic renewal. There is nothing you need to do.`,
            ],
          }
        : {
            subject: `Renew your ${plan} subscription by ${formatDate(data.dueAt)}`,
            lines: [
              `Your CineWeave ${plan} subscription is due for renewal on ${formatDate(data.dueAt)}: ${price}.`,
              ...(data.mandateFallback === true
                ? [
                    "This renewal could not be charged to the bank account you set up for automatic renewal, so it needs paying on TrueLayer's page.",
                  ]
                : []),
              { link: data.payUrl, label: "Pay for the next month" },
              `Unpaid on that date, your subscription stays usable for a 7-day grace period, then ends.`,
            ],
          };
    }
    case "renewal_paid":
      return {
        subject: `Receipt: ${formatAmount(data.amount, data.currency)} for CineWeave ${planLabel(data.plan)}`,
        lines: [
          `Thank you. We received ${formatAmount(data.amount, data.currency)} on ${formatDate(data.paidAt)} for the next month of your CineWeave ${planLabel(data.plan)} subscription.`,
          `Reference: ${data.reference}`,
        ],
      };
    case "renewal_failed":
      return {
        subject: `Your CineWeave ${planLabel(data.plan)} renewal was not paid`,
        lines: [
          `We could not take the payment for your CineWeave ${planLabel(data.plan)} subscription.`,
          `It stays usable until ${formatDate(data.graceEndsAt)}; if it is still unpaid then, it ends.`,
          data.payUrl !== null && isHttpsUrl(data.payUrl)
            ? { link: data.payUrl, label: "Pay for the month" }
            : data.retryAt !== null
              ? `We will try your bank account again on ${formatDate(data.retryAt)}; you can also pay for the month in CineWeave before then.`
              : `Open CineWeave to pay for the month before then.`,
        ],
      };
    case "subscription_canceled":
      return {
        subject: `Your CineWeave ${planLabel(data.plan)} subscription has ended`,
        lines: [
          data.unpaid
            ? `Your CineWeave ${planLabel(data.plan)} subscription ended on ${formatDate(data.canceledAt)} because its renewal was not paid.`
            : `Your CineWeave ${planLabel(data.plan)} subscription ended on ${formatDate(data.canceledAt)}.`,
          `Credits you still have stay usable until they expire. You can subscribe again at any time.`,
        ],
      };
    case "auto_renewal_set_up":
      return {
        subject: "Automatic renewal is set up",
        lines: [
          `Your CineWeave subscription will now renew automatically from the bank account you authorised.`,
          `No single payment can be more than ${formatAmount(data.maxAmount, data.currency)}. You can turn automatic renewal off at any time in CineWeave or in your bank's app.`,
        ],
      };
    case "auto_renewal_revoked":
      return {
        subject: "Automatic renewal is off",
        lines: [
          data.failed
            ? `Your bank has stopped the automatic renewal you set up, so it is off: your bank account will not be charged for later renewals.`
            : `Automatic renewal of your CineWeave subscription is off: your bank account will not be charged for later renewals.`,
          // A charge TrueLayer already made on the mandate stands (docs/subscriptions.md).
          `We will email you a link to pay each renewal yourself before it is due.`,
        ],
      };
    case "credits_expiring":
      return {
        subject: `${data.credits} CineWeave credits expire on ${formatDate(data.expiresAt)}`,
        lines: [
          `${data.credits} of your CineWeave credits expire on ${formatDate(data.expiresAt)}. Use them for videos before then.`,
          `You can turn these reminders off in your CineWeave account settings.`,
        ],
      };
    default: {
      const unknown: never = data;
      throw new Error(`No template for notice ${kind}: ${JSON.stringify(unknown)}`);
    }
  }
}

/** The subject and both bodies of a notice. */
export function renderNotice(data: NoticeData): RenderedNotice {
  const { subject, lines } = compose(data.kind, data);
  const kept = lines.filter((line) => typeof line === "string" || isHttpsUrl(line.link));
  const text = kept
    .map((line) => (typeof line === "string" ? line : `${line.label}: ${line.link}`))
    .join("\n\n");
  const html = kept
    .map((line) =>
      typeof line === "string"
        ? `<p>${escapeHtml(line)}</p>`
        : `<p><a href="${escapeHtml(line.link)}">${escapeHtml(line.label)}</a></p>`,
    )
    .join("\n");
  return {
    subject,
    text: `${text}\n\n— CineWeave`,
    html: `<!doctype html><html><body>${html}\n<p>— CineWeave</p></body></html>`,
  };
}
