/**
 * Auto-renewal end to end, with its notices (issue 22, "How it is shown"): set up through
 * `subscriptions.setUpAutoRenewal` against the stubbed mandate API, authorised and revoked by
 * signed TrueLayer webhooks, renewals charged on the mandate and dunning retries, and every
 * email notice of the way asserted in the `notices` table and in what reached Resend's API
 * (stubbed; the component in test mode, users with Resend test addresses). Every step's sweeps
 * run twice: nothing may be sent twice.
 */
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Doc, Id } from "../convex/_generated/dataModel";
import { addMonthsUtc } from "../convex/model/calendar";
import { formatDate } from "../convex/lib/noticeTemplates";
import { DAY, HOUR } from "./support/billing";
import { checkInvariants } from "./support/invariants";
import { mandateWorld, type MandateWorld } from "./support/mandates";
import { finishDueScheduledFunctions, signUp } from "./support/setup";
import { jsonResponse } from "./support/truelayer";
import { mandateEvent, stubMandateApi, type MandateApi } from "./support/trueLayerMandates";

const RESEND_BATCH_URL = "https://api.resend.com/emails/batch";
const START = Date.parse("2026-01-31T10:00:00Z");
const END0 = Date.parse("2026-02-28T10:00:00Z");
const CREATOR = "31.00 GBP";

type Email = { to: string[]; subject: string; text: string; html: string };

beforeEach(() => {
  vi.stubEnv("RESEND_API_KEY", "re_test_key");
  vi.stubEnv("EMAIL_FROM", "CineWeave <notices@cineweave.example>");
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllEnvs();
  vi.unstubAllGlobals();
});

/**
 * A mandate world (support/mandates.ts) with TrueLayer's mandate API (support/trueLayerMandates.ts)
 * and Resend's batch API stubbed on top; `emails` collects what reached Resend.
 */
async function autoRenewalWorld(now: number) {
  const w = await mandateWorld(now);
  const tl: MandateApi = stubMandateApi();
  const emails: Email[] = [];
  let resendIds = 0;
  const network = globalThis.fetch;
  vi.stubGlobal("fetch", async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    if (request.url !== RESEND_BATCH_URL) return await network(input, init);
    const batch = JSON.parse(await request.text()) as Email[];
    emails.push(...batch);
    return jsonResponse(200, { data: batch.map(() => ({ id: `re_${++resendIds}` })) });
  });
  return Object.assign(w, { tl, emails });
}
type World = Awaited<ReturnType<typeof autoRenewalWorld>>;

/** A signed TrueLayer mandate webhook, at the clock's time. */
async function mandateWebhook(
  w: MandateWorld,
  type: "mandate_authorized" | "mandate_revoked",
  trueLayerMandateId: string,
) {
  const at = new Date().toISOString();
  const extra = type === "mandate_authorized" ? { authorized_at: at } : { revoked_at: at };
  const event = mandateEvent(type, trueLayerMandateId, `${type}-${trueLayerMandateId}`, extra);
  const result = await w.deliver(event);
  expect(result.status).toBe(200);
  return result.body;
}

/**
 * A creator subscriber anchored at the clock's time who set up auto-renewal as the front end
 * does: `setUpAutoRenewal`, then TrueLayer's signed `mandate_authorized` (sent twice).
 */
async function autoRenewingSubscriber(w: World, name = "auto") {
  const { as, userId } = await signUp(w.t, name, `delivered+${name}@resend.dev`);
  await w.pay(await w.checkout(as, "creator"));
  const setUp = await as.action(api.subscriptions.setUpAutoRenewal, {});
  expect(await mandateWebhook(w, "mandate_authorized", setUp.trueLayerMandateId)).toMatchObject({
    outcome: "applied",
  });
  await mandateWebhook(w, "mandate_authorized", setUp.trueLayerMandateId); // replayed
  expect((await as.query(api.subscriptions.get, {}))?.mandate?.status).toBe("authorized");
  return { as, userId, trueLayerMandateId: setUp.trueLayerMandateId };
}

/**
 * The clock to `time` and what is due then, with the credits-expiring notice cron, twice (a cron
 * running again sends nothing more).
 */
async function twice(w: World, time: number) {
  for (let run = 0; run < 2; run++) {
    await w.at(time);
    await w.t.mutation(internal.notices.sweepExpiringCreditNotices, {});
  }
}

/** Lets the Resend component hand its batches to Resend's API (a second at a time). */
async function flushEmails(w: World) {
  for (let i = 0; i < 20; i++) {
    vi.advanceTimersByTime(1_000);
    await finishDueScheduledFunctions(w.t);
  }
}

async function noticesOf(w: World, userId: Id<"users">): Promise<Doc<"notices">[]> {
  return await w.t.run(async (ctx) =>
    (await ctx.db.query("notices").collect()).filter((n) => n.userId === userId),
  );
}

/** Every notice once: (kind, key) unique, and every one queued for Resend. */
function expectEachOnce(notices: Doc<"notices">[]) {
  expect(new Set(notices.map((n) => `${n.kind}|${n.key}`)).size).toBe(notices.length);
  expect(notices.filter((n) => n.status === "not_sent")).toEqual([]);
}

const count = (notices: Doc<"notices">[], kind: Doc<"notices">["kind"]) =>
  notices.filter((n) => n.kind === kind).length;

/** Executes the renewal's current charge on the mandate (TrueLayer's `payment_executed`, twice). */
async function executeRenewal(w: World, userId: Id<"users">) {
  const renewal = (await w.state(userId)).sub!.renewal!;
  expect(renewal).toMatchObject({ status: "pending" });
  await w.pay(renewal.paymentId);
  await w.pay(renewal.paymentId); // TrueLayer says so again (a new event id)
  return renewal;
}

/** The period ends (its sweeps twice), the emails go out: the next period has begun, paid. */
async function periodEnds(w: World, userId: Id<"users">, end: number, periodIndex: number) {
  await twice(w, end);
  await flushEmails(w);
  expect((await w.state(userId)).sub).toMatchObject({ status: "active", periodIndex });
}

describe("a year with a mandate, with its notices", () => {
  test.each([
    ["the 31st", START],
    ["29 Feb", Date.parse("2028-02-29T10:00:00Z")],
  ])(
    "anchored on %s: 12 renewals charged without the user: set up once, coming and paid once a period, nothing else",
    async (_name, anchor) => {
      const w = await autoRenewalWorld(anchor);
      const { userId } = await autoRenewingSubscriber(w);
      for (let n = 0; n < 12; n++) {
        const end = addMonthsUtc(anchor, n + 1);
        await twice(w, end - 3 * DAY);
        const renewal = await executeRenewal(w, userId);
        expect(renewal).toMatchObject({ method: "mandate", payUrl: null, dueAt: end });
        await periodEnds(w, userId, end, n + 1);
      }
      expect(w.charges).toHaveLength(12);
      const notices = await noticesOf(w, userId);
      expectEachOnce(notices);
      expect(notices.filter((n) => n.status !== "queued")).toEqual([]);
      expect(count(notices, "auto_renewal_set_up")).toBe(1);
      expect(count(notices, "renewal_coming")).toBe(12);
      expect(count(notices, "renewal_paid")).toBe(12);
      // Nobody spent a credit: each period's unused plan credits rolled over once and expire at
      // the next period's end (docs/subscriptions.md), announced once each, months 2 to 12.
      expect(count(notices, "credits_expiring")).toBe(11);
      expect(notices).toHaveLength(36);
      // What reached Resend: the same 36, each carrying its amount and date.
      expect(w.emails).toHaveLength(36);
      const expiring = w.emails.filter((e) => e.subject.includes("credits expire"));
      expiring.forEach((email, n) => {
        const at = formatDate(addMonthsUtc(anchor, n + 2));
        expect(email.subject).toBe(`250 CineWeave credits expire on ${at}`);
      });
      expect(w.emails.every((e) => e.to[0] === "delivered+auto@resend.dev")).toBe(true);
      const coming = w.emails.filter((e) => e.subject.includes("renews on"));
      expect(coming).toHaveLength(12);
      coming.forEach((email, n) => {
        const due = formatDate(addMonthsUtc(anchor, n + 1));
        expect(email.subject).toBe(`Your Creator subscription renews on ${due}`);
        expect(email.text).toContain(`We will charge ${CREATOR} to the bank account`);
        expect(email.text).not.toContain("https://");
        expect(email.html).toContain(due);
      });
      const receipts = w.emails.filter((e) => e.subject.startsWith("Receipt"));
      expect(receipts).toHaveLength(12);
      const payments = await w.renewals(userId);
      receipts.forEach((email, n) => {
        expect(email.subject).toBe(`Receipt: ${CREATOR} for CineWeave Creator`);
        expect(email.text).toContain(`Reference: ${payments[n]._id}`);
        expect(email.text).toContain(formatDate(payments[n].succeededAt!));
      });
      const setUp = w.emails.find((e) => e.subject === "Automatic renewal is set up")!;
      expect(setUp.text).toContain("60.00 GBP");
      await checkInvariants(w.t);
    },
  );
});

describe("a year where the mandate is revoked in month 4", () => {
  test.each([
    ["at the user's bank (a signed mandate_revoked webhook)", "webhook"],
    ["by the user (subscriptions.cancelAutoRenewal)", "cancelAutoRenewal"],
  ])("%s: revoked once, then each renewal announces its pay link", async (_name, how) => {
    const w = await autoRenewalWorld(START);
    const { as, userId, trueLayerMandateId } = await autoRenewingSubscriber(w);
    for (let n = 0; n < 12; n++) {
      const end = addMonthsUtc(START, n + 1);
      if (n === 3) {
        await twice(w, end - 5 * DAY);
        if (how === "webhook") {
          await mandateWebhook(w, "mandate_revoked", trueLayerMandateId);
          await mandateWebhook(w, "mandate_revoked", trueLayerMandateId); // replayed
        } else {
          await as.action(api.subscriptions.cancelAutoRenewal, {});
          await as.action(api.subscriptions.cancelAutoRenewal, {});
          expect(w.tl.revoked).toEqual([trueLayerMandateId]);
        }
        expect((await as.query(api.subscriptions.get, {}))?.mandate?.status).toBe("revoked");
      }
      await twice(w, end - 3 * DAY);
      const renewal = (await w.state(userId)).sub!.renewal!;
      expect(renewal.method ?? "manual").toBe(n < 3 ? "mandate" : "manual");
      await w.pay(renewal.paymentId); // on the mandate, or the user on TrueLayer's page
      await periodEnds(w, userId, end, n + 1);
    }
    expect(w.charges).toHaveLength(3);
    const notices = await noticesOf(w, userId);
    expectEachOnce(notices);
    expect(count(notices, "auto_renewal_set_up")).toBe(1);
    expect(count(notices, "auto_renewal_revoked")).toBe(1);
    expect(count(notices, "renewal_coming")).toBe(12);
    expect(count(notices, "renewal_paid")).toBe(12);
    expect(count(notices, "credits_expiring")).toBe(11); // the unused rollover, as above
    expect(notices).toHaveLength(37);
    expect(w.emails).toHaveLength(37);
    const revoked = w.emails.filter((e) => e.subject === "Automatic renewal is off");
    expect(revoked).toHaveLength(1);
    // Revoked by the user (in CineWeave or at their bank), not failed: the plain wording.
    expect(revoked[0].text).toContain(
      "Automatic renewal of your CineWeave subscription is off: your bank account will not be charged for later renewals.",
    );
    const payments = await w.renewals(userId);
    const coming = w.emails.filter((e) => /renews on|Renew your/.test(e.subject));
    coming.forEach((email, n) => {
      const due = formatDate(addMonthsUtc(START, n + 1));
      expect(email.text).toContain(due);
      expect(email.text).toContain(CREATOR);
      if (n < 3) {
        expect(email.subject).toBe(`Your Creator subscription renews on ${due}`);
        expect(email.text).not.toContain("https://");
      } else {
        expect(email.subject).toBe(`Renew your Creator subscription by ${due}`);
        expect(email.text).not.toContain("could not be charged"); // no mandate: today's renewal
        const payUrl = `payment_id=${payments[n].trueLayerTxnId}`;
        expect(email.text).toContain(payUrl);
        expect(email.html).toContain(payUrl);
      }
    });
    await checkInvariants(w.t);
  });
});

describe("dunning, with its notices", () => {
  /** The first charge (END0 − 3 days) refused, the period ended unpaid. */
  async function refusedAndPastDue(w: World, userId: Id<"users">) {
    await twice(w, END0 - 3 * DAY);
    const first = (await w.state(userId)).sub!.renewal!;
    await w.refuse(first.paymentId);
    await twice(w, END0);
    expect((await w.state(userId)).sub).toMatchObject({
      status: "past_due",
      graceEndsAt: END0 + 7 * DAY,
    });
  }

  /**
   * The grace's notices: set up, coming, failed once (with the grace end and the first retry on
   * the bank), and how it ended (`last`); each once, and each email sent.
   */
  async function expectGraceNotices(
    w: World,
    userId: Id<"users">,
    last: "renewal_paid" | "subscription_canceled",
  ) {
    const notices = await noticesOf(w, userId);
    expectEachOnce(notices);
    expect(notices.map((n) => n.kind).sort()).toEqual(
      ["auto_renewal_set_up", "renewal_coming", "renewal_failed", last].sort(),
    );
    expect(w.emails).toHaveLength(4);
    const failed = w.emails.filter((e) => e.subject.endsWith("renewal was not paid"));
    expect(failed).toHaveLength(1);
    expect(failed[0].text).toContain(`It stays usable until ${formatDate(END0 + 7 * DAY)}`);
    expect(failed[0].text).toContain(
      `We will try your bank account again on ${formatDate(END0 + DAY)}`,
    );
    return notices;
  }

  test("recovers on the second retry: failed once, paid once, no cancel", async () => {
    const w = await autoRenewalWorld(START);
    const { userId } = await autoRenewingSubscriber(w);
    await refusedAndPastDue(w, userId);
    await twice(w, END0 + DAY);
    await w.refuse((await w.state(userId)).sub!.renewal!.paymentId);
    await twice(w, END0 + 3 * DAY);
    const retry2 = await executeRenewal(w, userId);
    expect((await w.state(userId)).sub).toMatchObject({ status: "active", periodIndex: 1 });
    await twice(w, END0 + 5 * DAY);
    await twice(w, END0 + 7 * DAY);
    await flushEmails(w);
    expect(w.charges).toHaveLength(3);
    const notices = await expectGraceNotices(w, userId, "renewal_paid");
    expect(notices.find((n) => n.kind === "renewal_paid")!.key).toBe(`payment:${retry2.paymentId}`);
    await checkInvariants(w.t);
  });

  test("every retry refused: failed once, canceled once as unpaid", async () => {
    const w = await autoRenewalWorld(START);
    const { userId } = await autoRenewingSubscriber(w);
    await refusedAndPastDue(w, userId);
    for (const days of [1, 3, 5]) {
      await twice(w, END0 + days * DAY);
      await w.refuse((await w.state(userId)).sub!.renewal!.paymentId);
    }
    await twice(w, END0 + 7 * DAY);
    await twice(w, END0 + 7 * DAY + HOUR);
    await flushEmails(w);
    expect((await w.state(userId)).sub).toMatchObject({
      status: "canceled",
      cancelReason: "unpaid",
    });
    expect(w.charges).toHaveLength(4);
    await expectGraceNotices(w, userId, "subscription_canceled");
    const canceled = w.emails.filter((e) => e.subject.endsWith("subscription has ended"));
    expect(canceled).toHaveLength(1);
    expect(canceled[0].text).toContain(
      `ended on ${formatDate(END0 + 7 * DAY)} because its renewal was not paid`,
    );
    await checkInvariants(w.t);
  });
});

describe("a renewal announced, then changed", () => {
  test("a manual renewal superseded by a downgrade is announced again, with its new link and amount", async () => {
    const w = await autoRenewalWorld(START);
    const { as, userId } = await signUp(w.t, "manual", "delivered+manual@resend.dev");
    await w.pay(await w.checkout(as, "creator"));
    await twice(w, END0 - 3 * DAY);
    const first = (await w.state(userId)).sub!.renewal!;
    await as.mutation(api.subscriptions.changePlan, { planName: "starter" });
    await twice(w, END0 - 3 * DAY + HOUR);
    const second = (await w.state(userId)).sub!.renewal!;
    expect(second).toMatchObject({ amount: 1000, status: "pending" });
    expect(second.paymentId).not.toBe(first.paymentId);
    await w.pay(second.paymentId);
    await twice(w, END0);
    await flushEmails(w);
    expect((await w.state(userId)).sub).toMatchObject({ status: "active", plan: "starter" });
    const notices = await noticesOf(w, userId);
    expectEachOnce(notices);
    expect(notices.map((n) => n.kind)).toEqual([
      "renewal_coming",
      "renewal_coming",
      "renewal_paid",
    ]);
    const coming = w.emails.filter((e) => e.subject.startsWith("Renew your"));
    expect(coming.map((e) => e.subject)).toEqual([
      `Renew your Creator subscription by ${formatDate(END0)}`,
      `Renew your Starter subscription by ${formatDate(END0)}`,
    ]);
    expect(coming[1].text).toContain("10.00 GBP");
    expect(coming[1].text).toContain(second.payUrl!);
    expect(coming[1].text).not.toContain(first.payUrl!);
  });

  test("a mandate renewal re-priced by a downgrade before its charge is announced again with the new amount", async () => {
    const w = await autoRenewalWorld(START);
    const { as, userId } = await autoRenewingSubscriber(w);
    vi.setSystemTime(END0 - 3 * DAY);
    await w.t.mutation(internal.subscriptions.sweepDue, {}); // recorded and announced, not charged yet
    await as.mutation(api.subscriptions.changePlan, { planName: "starter" });
    await twice(w, END0 - 3 * DAY + HOUR);
    expect(w.charges).toMatchObject([{ amount: 1000 }]);
    await executeRenewal(w, userId);
    await twice(w, END0);
    await flushEmails(w);
    const notices = await noticesOf(w, userId);
    expectEachOnce(notices);
    expect(count(notices, "renewal_coming")).toBe(2);
    const coming = w.emails.filter((e) => e.subject.includes("renews on"));
    expect(coming.map((e) => e.subject)).toEqual([
      `Your Creator subscription renews on ${formatDate(END0)}`,
      `Your Starter subscription renews on ${formatDate(END0)}`,
    ]);
    expect(coming[1].text).toContain("We will charge 10.00 GBP");
  });
});

describe("the hosted page after all, with its notices", () => {
  test("TrueLayer could not create the charge 3 times: announced on the mandate once, then with the link once", async () => {
    const w = await autoRenewalWorld(START);
    const { userId } = await autoRenewingSubscriber(w);
    w.mandateDown = true;
    const MIN = 60 * 1000;
    for (const at of [0, 10, 30, 70]) await twice(w, END0 - 3 * DAY + at * MIN);
    const renewal = (await w.state(userId)).sub!.renewal!;
    expect(renewal).toMatchObject({ method: "manual", status: "pending" });
    await flushEmails(w);
    const notices = await noticesOf(w, userId);
    expectEachOnce(notices);
    expect(notices.map((n) => [n.kind, n.key.split(":").at(-1)])).toEqual([
      ["auto_renewal_set_up", notices[0].key.split(":").at(-1)],
      ["renewal_coming", "mandate"],
      ["renewal_coming", "manual"],
    ]);
    expect(w.emails.at(-1)!.text).toContain(renewal.payUrl!);
    expect(w.emails.at(-1)!.text).toContain(
      "This renewal could not be charged to the bank account you set up for automatic renewal",
    );
  });

  test("revoked while the grace's charges are refused: failed once, then the pay link", async () => {
    const w = await autoRenewalWorld(START);
    const { userId, trueLayerMandateId } = await autoRenewingSubscriber(w);
    await twice(w, END0 - 3 * DAY);
    await w.refuse((await w.state(userId)).sub!.renewal!.paymentId);
    await twice(w, END0);
    await mandateWebhook(w, "mandate_revoked", trueLayerMandateId);
    await twice(w, END0 + DAY);
    const renewal = (await w.state(userId)).sub!.renewal!;
    await twice(w, END0 + 3 * DAY);
    await flushEmails(w);
    expect(renewal).toMatchObject({ method: "manual", status: "pending" });
    const notices = await noticesOf(w, userId);
    expectEachOnce(notices);
    expect(notices.map((n) => n.kind)).toEqual([
      "auto_renewal_set_up",
      "renewal_coming",
      "renewal_failed",
      "auto_renewal_revoked",
      "renewal_coming",
    ]);
    // The link made in the grace asks for payment by the grace end, not by a date gone by.
    const link = w.emails.at(-1)!;
    expect(link.subject).toBe(`Pay for your Creator subscription by ${formatDate(END0 + 7 * DAY)}`);
    expect(link.text).toContain(renewal.payUrl!);
    expect(link.text).toContain(CREATOR);
    expect(link.text).toContain(`Unpaid on ${formatDate(END0 + 7 * DAY)}, your subscription ends.`);
    expect(link.text).not.toContain("7-day grace period");
    await w.pay(renewal.paymentId);
    await twice(w, END0 + 5 * DAY);
    expect((await w.state(userId)).sub).toMatchObject({ status: "active", periodIndex: 1 });
    expect(w.charges).toHaveLength(1);
  });
});
