/**
 * Email notices (convex/model/notices.ts, docs/notices.md), offline: TrueLayer and Resend's API
 * are stubbed `fetch` endpoints, the Resend component runs in test mode (users have Resend test
 * addresses), and delivery events come through the real Svix-signed webhook route.
 */
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { Webhook } from "svix";
import { api, components, internal } from "../convex/_generated/api";
import type { Doc, Id } from "../convex/_generated/dataModel";
import { renderNotice } from "../convex/lib/noticeTemplates";
import { withTriggers } from "../convex/lib/triggers";
import { billingWorld, DAY, HOUR, type BillingWorld } from "./support/billing";
import { logged } from "./support/consoleSink";
import { checkInvariants } from "./support/invariants";
import { expectCode, finishDueScheduledFunctions, signUp, type TestConvex } from "./support/setup";
import { jsonResponse, type RecordedRequest } from "./support/truelayer";

const START = Date.parse("2026-01-31T10:00:00Z");
const END0 = Date.parse("2026-02-28T10:00:00Z");
const RESEND_BATCH_URL = "https://api.resend.com/emails/batch";
const WEBHOOK_SECRET = `whsec_${btoa("resend-webhook-secret-for-tests")}`;

let w: BillingWorld;
let resendIds = 0;
let resendRequests: RecordedRequest[];

beforeEach(() => {
  vi.stubEnv("RESEND_API_KEY", "re_test_key");
  vi.stubEnv("EMAIL_FROM", "CineWeave <notices@cineweave.example>");
  vi.stubEnv("RESEND_WEBHOOK_SECRET", WEBHOOK_SECRET);
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllEnvs();
  vi.unstubAllGlobals();
});

/**
 * A deployment with TrueLayer stubbed (tests/support/billing.ts) and Resend's batch API too: one
 * id per email, as Resend answers. Returns the deployment; `w` is its billing world.
 */
async function world(): Promise<TestConvex> {
  w = await billingWorld(START);
  resendRequests = [];
  const network = globalThis.fetch;
  vi.stubGlobal("fetch", async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    if (request.url !== RESEND_BATCH_URL) return await network(input, init);
    const body = await request.text();
    resendRequests.push({ url: request.url, method: request.method, headers: {}, body });
    const emails = JSON.parse(body) as unknown[];
    return jsonResponse(200, { data: emails.map(() => ({ id: `re_${++resendIds}` })) });
  });
  return w.t;
}

/** A user with a Resend test address (test mode sends only to those). */
async function user(t: TestConvex, name: string) {
  return await signUp(t, name, `delivered+${name}@resend.dev`);
}

/** A user with an active creator subscription anchored at START. */
async function subscriber(t: TestConvex, name = "sub_1") {
  const { as, userId } = await user(t, name);
  await w.pay(await w.checkout(as, "creator"));
  return { as, userId };
}
/** Moves the clock to `time` and runs what is due then (the sweeps behind the scheduler). */
const at = (_t: TestConvex, time: number) => w.at(time);
async function noticesOf(t: TestConvex, userId: Id<"users">) {
  return await t.run(async (ctx) =>
    (await ctx.db.query("notices").collect()).filter((n) => n.userId === userId),
  );
}
const kinds = (notices: Doc<"notices">[]) => notices.map((n) => n.kind);
async function renewalOf(t: TestConvex, userId: Id<"users">) {
  return await t.run(async (ctx) => {
    const subs = await ctx.db.query("subscriptions").collect();
    return subs.filter((s) => s.userId === userId).at(-1)!.renewal!;
  });
}
/**
 * Lets the Resend component's background work run (its batch a second after a send, its
 * workpools' loops on the clock): the clock moves on a second at a time, 20 times.
 */
async function flushEmails(t: TestConvex) {
  for (let i = 0; i < 20; i++) {
    vi.advanceTimersByTime(1_000);
    await finishDueScheduledFunctions(t);
  }
}
/** The emails that reached Resend's API, flattened out of its batches. */
const emailsSent = () =>
  resendRequests.flatMap(
    (r) => JSON.parse(r.body) as Array<{ to: string[]; subject: string; text: string }>,
  );

/** Writes as a mutation of the app would: through the triggers (lib/triggers.ts). */
async function writeWithTriggers(
  t: TestConvex,
  write: (db: ReturnType<typeof withTriggers>["db"]) => Promise<unknown>,
) {
  await t.run(async (ctx) => {
    await write(withTriggers(ctx).db);
  });
}

describe("each notice is sent once however often its path runs", () => {
  test("renewal coming (manual, with the pay link), renewal paid, and nothing else", async () => {
    const t = await world();
    const { userId } = await subscriber(t);
    expect(await noticesOf(t, userId)).toEqual([]); // a first payment is not a renewal
    await at(t, END0 - 3 * DAY);
    await at(t, END0 - 3 * DAY); // the renewal's path again: nothing new
    const renewal = await renewalOf(t, userId);
    // The link attached again, and a new one (a payment created anew): still one notice.
    for (const payUrl of [renewal.payUrl, `${renewal.payUrl}&again=1`]) {
      await t.mutation(internal.subscriptions.attachRenewalUrl, {
        paymentId: renewal.paymentId,
        payUrl,
      });
    }
    let notices = await noticesOf(t, userId);
    expect(kinds(notices)).toEqual(["renewal_coming"]);
    expect(notices[0]).toMatchObject({ status: "queued" });
    const paid = {
      type: "payment_executed",
      payment_id: (await w.payment(renewal.paymentId)).trueLayerTxnId,
    };
    await w.deliver({ ...paid, event_id: "evt-r1" });
    await w.deliver({ ...paid, event_id: "evt-r1" });
    await w.deliver({ ...paid, event_id: "evt-r2" });
    notices = await noticesOf(t, userId);
    expect(kinds(notices)).toEqual(["renewal_coming", "renewal_paid"]);
    expect(notices[1].key).toBe(`payment:${renewal.paymentId}`);
    await at(t, END0);
    await at(t, END0 + HOUR);
    expect(kinds(await noticesOf(t, userId))).toEqual(["renewal_coming", "renewal_paid"]);
    await flushEmails(t);
    // Both reached Resend's API, to the user, with the link in the first.
    const sent = emailsSent();
    expect(sent.map((e) => e.to)).toEqual([
      ["delivered+sub_1@resend.dev"],
      ["delivered+sub_1@resend.dev"],
    ]);
    expect(sent[0].text).toContain(renewal.payUrl!);
    expect(sent[0].text).toContain("31.00 GBP");
    expect(sent[1].subject).toBe("Receipt: 31.00 GBP for CineWeave Creator");
    await checkInvariants(t);
  });

  test("renewal failed at the period end (grace end, pay link), then canceled at the grace end", async () => {
    const t = await world();
    const { userId } = await subscriber(t);
    await at(t, END0 - 3 * DAY);
    const renewal = await renewalOf(t, userId);
    await at(t, END0);
    await at(t, END0); // the period close again
    await at(t, END0 + DAY);
    let notices = await noticesOf(t, userId);
    expect(kinds(notices)).toEqual(["renewal_coming", "renewal_failed"]);
    expect(notices[1].key).toMatch(/^period:.+:1:1$/);
    await at(t, END0 + 7 * DAY);
    await at(t, END0 + 7 * DAY);
    notices = await noticesOf(t, userId);
    expect(kinds(notices)).toEqual(["renewal_coming", "renewal_failed", "subscription_canceled"]);
    await flushEmails(t);
    const failed = emailsSent().find((e) => e.subject.includes("was not paid"))!;
    expect(failed.text).toContain(renewal.payUrl!);
    expect(failed.text).toContain("7 March 2026, 10:00 UTC");
    expect(emailsSent().at(-1)!.text).toContain("because its renewal was not paid");
    await checkInvariants(t);
  });

  test("a subscription the user canceled: one notice when it ends, none for an incomplete one", async () => {
    const t = await world();
    const { as, userId } = await subscriber(t);
    await as.mutation(api.subscriptions.cancel, {});
    await at(t, END0);
    await at(t, END0);
    expect(kinds(await noticesOf(t, userId))).toEqual(["subscription_canceled"]);
    // Someone who never paid: their incomplete subscription ends with the account, unannounced.
    const other = await user(t, "sub_2");
    await other.as.action(api.payments.createCheckout, { planName: "creator" });
    await t.mutation(internal.clerk.applyClerkEvent, {
      eventId: "evt-del",
      type: "user.deleted",
      clerkId: "sub_2",
    });
    expect(await noticesOf(t, other.userId)).toEqual([]);
  });

  test("deleted with a live subscription, or before a queued notice went out: no email", async () => {
    const t = await world();
    const { userId } = await subscriber(t);
    await t.mutation(internal.clerk.applyClerkEvent, {
      eventId: "evt-del-1",
      type: "user.deleted",
      clerkId: "sub_1",
    });
    expect((await noticesOf(t, userId)).map((n) => [n.kind, n.status, n.reason])).toEqual([
      ["subscription_canceled", "not_sent", "account deleted"],
    ]);
    // Decided (queued) while the account was live, deleted before the email was handed over.
    const other = await user(t, "sub_3");
    await t.mutation(internal.credits.grantCredits, {
      userId: other.userId,
      credits: 50,
      expiresAt: START + DAY,
      note: "test",
    });
    await t.mutation(internal.notices.sweepExpiringCreditNotices, {});
    expect((await noticesOf(t, other.userId)).map((n) => n.status)).toEqual(["queued"]);
    await t.mutation(internal.clerk.applyClerkEvent, {
      eventId: "evt-del-3",
      type: "user.deleted",
      clerkId: "sub_3",
    });
    await flushEmails(t);
    expect(emailsSent()).toEqual([]);
    expect((await noticesOf(t, other.userId)).map((n) => [n.status, n.reason])).toEqual([
      ["not_sent", "account deleted"],
    ]);
  });

  test("a renewal on the mandate is announced when recorded, without a link; a fallback to the page is announced again with it", async () => {
    const t = await world();
    const { userId } = await subscriber(t);
    await at(t, END0 - 3 * DAY);
    const renewal = await renewalOf(t, userId);
    const subId = (await t.run(async (ctx) => await ctx.db.query("subscriptions").first()))!._id;
    // As the mandate work records it: the same renewal, paid on the mandate (no link).
    const asMandate = async () =>
      await writeWithTriggers(t, (db) =>
        db.patch("subscriptions", subId, {
          renewal: { ...renewal, method: "mandate", payUrl: null },
        }),
      );
    await t.run(async (ctx) => {
      for (const n of await ctx.db.query("notices").collect())
        await ctx.db.delete("notices", n._id);
    });
    await asMandate();
    await asMandate();
    let notices = await noticesOf(t, userId);
    expect(notices.map((n) => [n.kind, n.key.endsWith(":mandate")])).toEqual([
      ["renewal_coming", true],
    ]);
    expect(notices[0].subject).toBe(
      "Your Creator subscription renews on 28 February 2026, 10:00 UTC",
    );
    // Falls back to the hosted page (the mandate was revoked): announced with the link, once.
    for (let i = 0; i < 2; i++) {
      await writeWithTriggers(t, (db) =>
        db.patch("subscriptions", subId, {
          renewal: {
            ...renewal,
            method: "manual",
            payUrl: `${renewal.payUrl}&fallback=${i}`,
          },
        }),
      );
    }
    notices = await noticesOf(t, userId);
    expect(notices.map((n) => n.key.split(":").at(-1))).toEqual(["mandate", "manual"]);
  });

  test("auto-renewal set up and revoked: from the mandates rows' changes alone, once each", async () => {
    const t = await world();
    const { userId } = await user(t, "m_1");
    let mandateId: Id<"mandates"> | undefined;
    await writeWithTriggers(t, async (db) => {
      mandateId = await db.insert("mandates", {
        userId,
        trueLayerMandateId: "mdt-1",
        type: "sweeping",
        status: "authorization_required",
        currency: "GBP",
        maxAmount: 6900,
        periodicLimit: 6900,
        createdAt: Date.now(),
      });
    });
    const setStatus = (status: Doc<"mandates">["status"]) =>
      writeWithTriggers(t, (db) => db.patch("mandates", mandateId!, { status }));
    await setStatus("authorizing");
    expect(await noticesOf(t, userId)).toEqual([]);
    await setStatus("authorized");
    await setStatus("authorized");
    expect(kinds(await noticesOf(t, userId))).toEqual(["auto_renewal_set_up"]);
    await setStatus("revoked");
    await setStatus("revoked");
    const notices = await noticesOf(t, userId);
    expect(kinds(notices)).toEqual(["auto_renewal_set_up", "auto_renewal_revoked"]);
    expect(notices[0].subject).toBe("Automatic renewal is set up");
    // A mandate that fails before it was ever authorised was never set up: nothing.
    await writeWithTriggers(t, async (db) => {
      const id = await db.insert("mandates", {
        userId,
        type: "sweeping",
        status: "authorizing",
        currency: "GBP",
        maxAmount: 6900,
        periodicLimit: 6900,
        createdAt: Date.now(),
      });
      await db.patch("mandates", id, { status: "failed" });
    });
    expect(await noticesOf(t, userId)).toHaveLength(2);
  });
});

describe("credits expiring", () => {
  async function grant(t: TestConvex, userId: Id<"users">, credits: number, expiresAt: number) {
    await t.mutation(internal.credits.grantCredits, { userId, credits, expiresAt, note: "test" });
  }
  const sweep = (t: TestConvex) => t.mutation(internal.notices.sweepExpiringCreditNotices, {});

  test("a plan-size share expiring within 3 days: one notice per lot, however often the sweep runs", async () => {
    const t = await world();
    const { userId } = await user(t, "c_1"); // starter: 80 a month, so 8 is the share
    await grant(t, userId, 10, START + 2 * DAY);
    await grant(t, userId, 7, START + 2 * DAY); // under the share
    await grant(t, userId, 50, START + 4 * DAY); // not within 3 days yet
    await sweep(t);
    await sweep(t);
    let notices = await noticesOf(t, userId);
    expect(notices.map((n) => n.subject)).toEqual([
      "10 CineWeave credits expire on 2 February 2026, 10:00 UTC",
    ]);
    vi.setSystemTime(START + DAY + HOUR);
    await sweep(t);
    await sweep(t);
    notices = await noticesOf(t, userId);
    expect(notices.map((n) => n.subject)).toEqual([
      "10 CineWeave credits expire on 2 February 2026, 10:00 UTC",
      "50 CineWeave credits expire on 4 February 2026, 10:00 UTC",
    ]);
    // The sweep's cursor lost (every lot looked at again): the keys still send nothing twice.
    await t.run(async (ctx) => {
      for (const row of await ctx.db.query("noticeSweeps").collect()) {
        await ctx.db.delete("noticeSweeps", row._id);
      }
    });
    expect(await sweep(t)).toMatchObject({ looked: 3, noticed: 0 });
    expect(await noticesOf(t, userId)).toHaveLength(2);
  });

  test("the sweep goes through a backlog in bounded steps that reschedule themselves", async () => {
    const t = await world();
    const users = [];
    for (let i = 0; i < 3; i++) users.push((await user(t, `c_${i}`)).userId);
    // 60 lots expiring at the same moment (a burst), more than one step's 50.
    for (let i = 0; i < 60; i++) await grant(t, users[i % 3], 20, START + 2 * DAY);
    const first = await sweep(t);
    expect(first).toEqual({ looked: 50, noticed: 50, more: true });
    await finishDueScheduledFunctions(t);
    const all = await t.run(async (ctx) => await ctx.db.query("notices").collect());
    expect(all.filter((n) => n.kind === "credits_expiring")).toHaveLength(60);
    expect(await sweep(t)).toEqual({ looked: 0, noticed: 0, more: false });
  });

  test("plan lots that roll over are not announced; turned off by the user: recorded, not sent", async () => {
    const t = await world();
    const { as, userId } = await subscriber(t, "c_sub");
    vi.setSystemTime(END0 - 2 * DAY);
    await sweep(t);
    expect(await noticesOf(t, userId)).toEqual([]); // the creator plan lot rolls over
    expect(await as.mutation(api.notices.setEmailPreferences, { creditsExpiring: false })).toEqual({
      creditsExpiring: false,
    });
    expect(await as.query(api.users.me, {})).toMatchObject({
      emailPreferences: { creditsExpiring: false },
    });
    await grant(t, userId, 100, END0);
    await sweep(t);
    expect(await noticesOf(t, userId)).toMatchObject([
      { kind: "credits_expiring", status: "not_sent", reason: "turned off by the user" },
    ]);
    // Turned off, receipts and payment notices still go.
    await at(t, END0 - 2 * DAY);
    expect((await noticesOf(t, userId)).map((n) => [n.kind, n.status])).toEqual([
      ["credits_expiring", "not_sent"],
      ["renewal_coming", "queued"],
    ]);
  });
});

describe("who gets email", () => {
  test("without RESEND_API_KEY and EMAIL_FROM: recorded not_sent, logged once, nothing else changes", async () => {
    vi.stubEnv("RESEND_API_KEY", "");
    vi.stubEnv("EMAIL_FROM", "");
    const t = await world();
    const { userId } = await subscriber(t);
    await at(t, END0 - 3 * DAY);
    await at(t, END0);
    expect((await noticesOf(t, userId)).map((n) => [n.kind, n.status, n.reason])).toEqual([
      ["renewal_coming", "not_sent", "email not configured (RESEND_API_KEY, EMAIL_FROM)"],
      ["renewal_failed", "not_sent", "email not configured (RESEND_API_KEY, EMAIL_FROM)"],
    ]);
    expect(logged("warn").filter((line) => line.includes("RESEND_API_KEY"))).toEqual([
      "Email notices are not sent: RESEND_API_KEY and EMAIL_FROM must both be set.",
    ]);
    expect(emailsSent()).toEqual([]);
    expect(await renewalOf(t, userId)).toMatchObject({ status: "pending" });
  });

  test("test mode sends only to Resend's test addresses; a deleted account gets nothing", async () => {
    const t = await world();
    const { userId } = await signUp(t, "real_1", "someone@example.com");
    const deleted = await user(t, "gone_1");
    await t.mutation(internal.clerk.applyClerkEvent, {
      eventId: "evt-gone",
      type: "user.deleted",
      clerkId: "gone_1",
    });
    for (const id of [userId, deleted.userId]) {
      await t.mutation(internal.credits.grantCredits, {
        userId: id,
        credits: 50,
        expiresAt: START + DAY,
        note: "test",
      });
    }
    await t.mutation(internal.notices.sweepExpiringCreditNotices, {});
    expect((await noticesOf(t, userId)).map((n) => [n.status, n.reason])).toEqual([
      ["not_sent", "test mode: not a Resend test address"],
    ]);
    expect((await noticesOf(t, deleted.userId)).map((n) => [n.status, n.reason])).toEqual([
      ["not_sent", "account deleted"],
    ]);
    await finishDueScheduledFunctions(t);
    expect(emailsSent()).toEqual([]);
  });

  test("setEmailPreferences: the caller's own row only, validated", async () => {
    const t = await world();
    await expectCode(
      t.mutation(api.notices.setEmailPreferences, { creditsExpiring: false }),
      "UNAUTHENTICATED",
    );
    const a = await user(t, "pref_a");
    const b = await user(t, "pref_b");
    await a.as.mutation(api.notices.setEmailPreferences, { creditsExpiring: false });
    expect(await b.as.query(api.users.me, {})).not.toHaveProperty("emailPreferences");
    await a.as.mutation(api.notices.setEmailPreferences, { creditsExpiring: true });
    expect(await a.as.query(api.users.me, {})).toMatchObject({
      emailPreferences: { creditsExpiring: true },
    });
  });
});

describe("delivery status from Resend's signed webhook", () => {
  function signed(body: string, secret = WEBHOOK_SECRET, id = `msg_${Math.random()}`) {
    const at = new Date();
    return {
      "Content-Type": "application/json",
      "svix-id": id,
      "svix-timestamp": String(Math.floor(at.getTime() / 1000)),
      "svix-signature": new Webhook(secret).sign(id, at, body),
    };
  }
  const event = (type: string, emailId: string, extra: Record<string, unknown> = {}) =>
    JSON.stringify({
      type,
      created_at: new Date().toISOString(),
      data: {
        created_at: new Date().toISOString(),
        email_id: emailId,
        from: "notices@cineweave.example",
        to: ["delivered+sub_1@resend.dev"],
        subject: "x",
        ...extra,
      },
    });

  /** A subscriber whose renewal-coming email Resend accepted (its Resend id known). */
  async function sentNotice(t: TestConvex) {
    const { userId } = await subscriber(t);
    await at(t, END0 - 3 * DAY);
    // The component batches after a second and calls Resend's API (stubbed).
    await flushEmails(t);
    expect(emailsSent()).toHaveLength(1);
    const [notice] = await noticesOf(t, userId);
    return { userId, notice, resendId: `re_${resendIds}` };
  }
  async function deliver(t: TestConvex, body: string, headers: Record<string, string>) {
    const response = await t.fetch("/resend/webhook", { method: "POST", headers, body });
    await flushEmails(t); // the component calls `onEmailEvent` through its callback workpool
    return response;
  }

  test("sent, delivered, then a late sent: the status only moves forward", async () => {
    const t = await world();
    const { userId, resendId } = await sentNotice(t);
    const body = event("email.delivered", resendId);
    expect((await deliver(t, body, signed(body))).status).toBe(200);
    expect((await noticesOf(t, userId))[0].status).toBe("delivered");
    const late = event("email.sent", resendId);
    expect((await deliver(t, late, signed(late))).status).toBe(200);
    expect((await noticesOf(t, userId))[0].status).toBe("delivered");
    const complaint = event("email.complained", resendId);
    await deliver(t, complaint, signed(complaint));
    expect((await noticesOf(t, userId))[0].status).toBe("complained");
  });

  test("the hourly clean-up drops the component's finished emails after 7 days; the notice stays", async () => {
    const t = await world();
    const { userId, notice, resendId } = await sentNotice(t);
    const body = event("email.delivered", resendId);
    await deliver(t, body, signed(body));
    const emailStatus = async () =>
      await t.run(async (ctx) =>
        ctx.runQuery(components.resend.lib.getStatus, { emailId: notice.emailId! }),
      );
    expect(await emailStatus()).toMatchObject({ status: "delivered" });
    vi.setSystemTime(Date.now() + 6 * DAY);
    await t.mutation(internal.notices.cleanupResendEmails, {});
    await flushEmails(t);
    expect(await emailStatus()).toMatchObject({ status: "delivered" });
    vi.setSystemTime(Date.now() + 2 * DAY);
    await t.mutation(internal.notices.cleanupResendEmails, {});
    await flushEmails(t);
    expect(await emailStatus()).toBeNull();
    expect((await noticesOf(t, userId))[0].status).toBe("delivered");
  });

  test("a bounce records Resend's message", async () => {
    const t = await world();
    const { userId, resendId } = await sentNotice(t);
    const body = event("email.bounced", resendId, {
      bounce: { message: "Mailbox does not exist", subType: "General", type: "Permanent" },
    });
    await deliver(t, body, signed(body));
    expect((await noticesOf(t, userId))[0]).toMatchObject({
      status: "bounced",
      reason: "Mailbox does not exist",
    });
  });

  test("a bad signature, or no secret set: refused and nothing written", async () => {
    const t = await world();
    const { userId, resendId } = await sentNotice(t);
    const body = event("email.delivered", resendId);
    const before = await t.run(async (ctx) => ({
      notices: await ctx.db.query("notices").collect(),
      scheduled: (await ctx.db.system.query("_scheduled_functions").collect()).length,
    }));
    const forged = signed(body, `whsec_${btoa("some-other-resend-secret!!")}`);
    const response = await deliver(t, body, forged);
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ code: "UNAUTHENTICATED" });
    expect((await deliver(t, `${body} `, signed(body))).status).toBe(401); // tampered body
    vi.stubEnv("RESEND_WEBHOOK_SECRET", "");
    expect((await deliver(t, body, signed(body))).status).toBe(503);
    const after = await t.run(async (ctx) => ({
      notices: await ctx.db.query("notices").collect(),
      scheduled: (await ctx.db.system.query("_scheduled_functions").collect()).length,
    }));
    expect(after).toEqual(before);
    expect((await noticesOf(t, userId))[0].status).toBe("queued");
  });
});

describe("templates", () => {
  test("HTML bodies escape the data; only https links are kept", () => {
    const evil = 'https://pay.example.com/?a="><script>alert(1)</script>';
    const { html, text } = renderNotice({
      kind: "renewal_coming",
      plan: "creator",
      amount: 3100,
      currency: "GBP",
      dueAt: END0,
      payUrl: evil,
    });
    expect(html).not.toContain("<script>");
    expect(html).toContain("&quot;&gt;&lt;script&gt;");
    expect(text).toContain(evil);
    const insecure = renderNotice({
      kind: "renewal_failed",
      plan: "creator",
      graceEndsAt: END0,
      payUrl: "javascript:alert(1)",
      retryAt: null,
    });
    expect(insecure.html).not.toContain("javascript:");
    expect(insecure.text).not.toContain("javascript:");
    expect(insecure.text).toContain("Open CineWeave to pay for the month before then.");
  });
});
