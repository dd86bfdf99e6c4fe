import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { Webhook } from "svix";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { api } from "../convex/_generated/api";
import { generateEs512Key, stubTrueLayerEnv } from "./support/truelayer";
import { logged } from "./support/consoleSink";
import { expectCode, identityFor, setup, signUp, type TestConvex } from "./support/setup";

const SECRET = `whsec_${Buffer.from(randomBytes(24)).toString("base64")}`;

beforeEach(() => {
  vi.stubEnv("CLERK_WEBHOOK_SECRET", SECRET);
});

afterEach(() => {
  vi.unstubAllEnvs();
});

let messageCounter = 0;

/** Delivers a Clerk event signed the way Svix signs it. */
async function deliverClerk(
  t: TestConvex,
  payload: unknown,
  options: {
    secret?: string;
    timestamp?: Date;
    msgId?: string;
    tamper?: (b: string) => string;
  } = {},
) {
  const body = JSON.stringify(payload);
  const msgId = options.msgId ?? `msg_${++messageCounter}`;
  const timestamp = options.timestamp ?? new Date();
  const signature = new Webhook(options.secret ?? SECRET).sign(msgId, timestamp, body);
  return await t.fetch("/clerk/webhook", {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "svix-id": msgId,
      "svix-timestamp": String(Math.floor(timestamp.getTime() / 1000)),
      "svix-signature": signature,
    },
    body: options.tamper ? options.tamper(body) : body,
  });
}

const userEvent = (
  type: "user.created" | "user.updated",
  id: string,
  primary: string,
  other?: string,
) => ({
  type,
  object: "event",
  data: {
    id,
    object: "user",
    primary_email_address_id: "idn_primary",
    email_addresses: [
      ...(other ? [{ id: "idn_other", email_address: other }] : []),
      { id: "idn_primary", email_address: primary },
    ],
  },
});
const userDeleted = (id: string) => ({
  type: "user.deleted",
  object: "event",
  data: { id, object: "user", deleted: true },
});

async function rows(t: TestConvex) {
  return await t.run(async (ctx) => ({
    users: await ctx.db.query("users").collect(),
    ledger: await ctx.db.query("ledger").collect(),
    events: await ctx.db.query("webhookEvents").collect(),
  }));
}

describe("Clerk webhook", () => {
  test("user.created creates the user with the primary email and one grant", async () => {
    const t = await setup();
    const response = await deliverClerk(
      t,
      userEvent("user.created", "user_1", "Primary@Example.com", "other@example.com"),
    );
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ outcome: "applied" });
    const { users, ledger, events } = await rows(t);
    expect(users).toMatchObject([
      { clerkId: "user_1", email: "primary@example.com", plan: "starter", credits: 80 },
    ]);
    expect(ledger).toMatchObject([{ kind: "grant", delta: 80 }]);
    expect(events).toMatchObject([{ provider: "clerk", type: "user.created" }]);
  });

  test("user.updated changes the email and grants nothing more", async () => {
    const t = await setup();
    await deliverClerk(t, userEvent("user.created", "user_1", "a@example.com"));
    await deliverClerk(t, userEvent("user.updated", "user_1", "b@example.com"));
    const { users, ledger } = await rows(t);
    expect(users).toMatchObject([{ email: "b@example.com", credits: 80 }]);
    expect(ledger).toHaveLength(1);
  });

  test("webhook first, then the client: one user, one grant", async () => {
    const t = await setup();
    await deliverClerk(t, userEvent("user.created", "user_1", "user_1@example.com"));
    const { userId } = await signUp(t, "user_1");
    const { users, ledger } = await rows(t);
    expect(users.map((u) => u._id)).toEqual([userId]);
    expect(ledger.filter((row) => row.kind === "grant")).toHaveLength(1);
  });

  test("client first, then the webhook: one user, one grant", async () => {
    const t = await setup();
    const { userId } = await signUp(t, "user_1");
    const response = await deliverClerk(
      t,
      userEvent("user.created", "user_1", "user_1@example.com"),
    );
    expect(response.status).toBe(200);
    const { users, ledger } = await rows(t);
    expect(users.map((u) => u._id)).toEqual([userId]);
    expect(ledger.filter((row) => row.kind === "grant")).toHaveLength(1);
  });

  test("user.deleted before the user exists leaves a tombstone: a late user.created or sign-up cannot revive it", async () => {
    const t = await setup();
    const deleted = await deliverClerk(t, userDeleted("user_1"));
    expect(await deleted.json()).toMatchObject({ outcome: "applied" });
    const late = await deliverClerk(t, userEvent("user.created", "user_1", "a@example.com"));
    expect(await late.json()).toMatchObject({ outcome: "ignored" });
    await expectCode(
      t
        .withIdentity(identityFor("user_1"))
        .mutation(api.users.getOrCreateUser, { clerkId: "user_1", email: "user_1@example.com" }),
      "FORBIDDEN",
    );
    const { users, ledger } = await rows(t);
    expect(users).toMatchObject([{ clerkId: "user_1", credits: 0 }]);
    expect(users[0].deletedAt).toBeTypeOf("number");
    expect(users[0].email).toBe(`deleted+${users[0]._id}@deleted.invalid`);
    expect(ledger).toHaveLength(0);
  });

  test("user.deleted anonymises the user, who can no longer act; history stays", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "user_1");
    const response = await deliverClerk(t, userDeleted("user_1"));
    expect(await response.json()).toMatchObject({ outcome: "applied" });
    const { users, ledger } = await rows(t);
    expect(users).toHaveLength(1);
    expect(users[0].email).toBe(`deleted+${userId}@deleted.invalid`);
    expect(users[0].deletedAt).toBeTypeOf("number");
    expect(ledger).toHaveLength(1);
    await expectCode(as.query(api.users.me, {}), "FORBIDDEN");
    await expectCode(
      as.mutation(api.users.getOrCreateUser, { clerkId: "user_1", email: "user_1@example.com" }),
      "FORBIDDEN",
    );
    stubTrueLayerEnv(generateEs512Key("merchant-kid"));
    await expectCode(as.action(api.payments.createCheckout, { planName: "creator" }), "FORBIDDEN");
    // A late user.updated does not bring the account back.
    const late = await deliverClerk(t, userEvent("user.updated", "user_1", "back@example.com"));
    expect(late.status).toBe(200);
    expect(await late.json()).toMatchObject({ outcome: "ignored" });
    expect((await rows(t)).users[0].email).toBe(`deleted+${userId}@deleted.invalid`);
  });

  test("a bad signature, a tampered body or missing Svix headers are 401 and write nothing", async () => {
    const t = await setup();
    const created = userEvent("user.created", "user_1", "a@example.com");
    const wrongSecret = `whsec_${Buffer.from(randomBytes(24)).toString("base64")}`;
    const badSecret = await deliverClerk(t, created, { secret: wrongSecret });
    expect(badSecret.status).toBe(401);
    expect(await badSecret.json()).toMatchObject({ code: "UNAUTHENTICATED" });
    const tampered = await deliverClerk(t, created, {
      tamper: (body) => body.replace("user_1", "user_2"),
    });
    expect(tampered.status).toBe(401);
    const unsigned = await t.fetch("/clerk/webhook", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(created),
    });
    expect(unsigned.status).toBe(401);
    const { users, events } = await rows(t);
    expect(users).toHaveLength(0);
    expect(events).toHaveLength(0);
  });

  test("a stale (or future) timestamp is refused even with a valid signature", async () => {
    const t = await setup();
    const created = userEvent("user.created", "user_1", "a@example.com");
    const stale = await deliverClerk(t, created, {
      timestamp: new Date(Date.now() - 60 * 60 * 1000),
    });
    expect(stale.status).toBe(401);
    const future = await deliverClerk(t, created, {
      timestamp: new Date(Date.now() + 60 * 60 * 1000),
    });
    expect(future.status).toBe(401);
    expect((await rows(t)).users).toHaveLength(0);
  });

  test("a replayed message id is recognised and applied once", async () => {
    const t = await setup();
    await deliverClerk(t, userEvent("user.created", "user_1", "a@example.com"), {
      msgId: "msg_same",
    });
    const replay = await deliverClerk(t, userEvent("user.updated", "user_1", "b@example.com"), {
      msgId: "msg_same",
    });
    expect(await replay.json()).toMatchObject({ outcome: "duplicate" });
    expect((await rows(t)).users).toMatchObject([{ email: "a@example.com" }]);
    expect(logged("log")).toEqual([
      expect.stringMatching(/^Clerk user\.created msg_same: applied: /),
      expect.stringMatching(/^Clerk user\.updated msg_same: duplicate: /),
    ]);
  });

  test("other event types are acknowledged; malformed events are 400; no secret is 503", async () => {
    const t = await setup();
    const session = await deliverClerk(t, { type: "session.created", data: { id: "sess_1" } });
    expect(session.status).toBe(200);
    expect(await session.json()).toMatchObject({ outcome: "ignored" });
    const noId = await deliverClerk(t, { type: "user.created", data: {} });
    expect(noId.status).toBe(400);
    expect(await noId.json()).toMatchObject({ code: "INVALID_ARGUMENT" });
    const noEmail = await deliverClerk(t, {
      type: "user.created",
      data: { id: "user_phone", email_addresses: [], primary_email_address_id: null },
    });
    expect(await noEmail.json()).toMatchObject({ outcome: "ignored" });
    expect((await rows(t)).users).toHaveLength(0);

    vi.stubEnv("CLERK_WEBHOOK_SECRET", "");
    const unconfigured = await deliverClerk(
      t,
      userEvent("user.created", "user_1", "a@example.com"),
    );
    expect(unconfigured.status).toBe(503);
    expect((await rows(t)).users).toHaveLength(0);
  });

  test("a signed-in identity can still create itself after webhook sign-up", async () => {
    const t = await setup();
    await deliverClerk(t, userEvent("user.created", "user_9", "nine@example.com"));
    const me = await t.withIdentity(identityFor("user_9")).query(api.users.me, {});
    expect(me).toMatchObject({ clerkId: "user_9", credits: 80 });
  });
});

describe("the Clerk webhook fails closed on a broken secret", () => {
  async function dump(t: TestConvex) {
    return await t.run(async (ctx) => ({
      users: await ctx.db.query("users").collect(),
      ledger: await ctx.db.query("ledger").collect(),
      events: await ctx.db.query("webhookEvents").collect(),
    }));
  }

  const unsigned = (payload: unknown) => ({
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  });

  test.each([
    ["not base64", "whsec_not-valid-base64!"],
    ["a leading space", ` ${SECRET}`],
    ["wrapped in quotes", `"${SECRET}"`],
    ["the URL-safe alphabet", `whsec_${Buffer.from(randomBytes(24)).toString("base64url")}-_`],
    ["an empty key", "whsec_"],
    ["a key too short to be secret", `whsec_${Buffer.from("abc").toString("base64")}`],
    ["no whsec_ prefix", Buffer.from(randomBytes(24)).toString("base64")],
  ])(
    "a secret with %s: unsigned and forged events are 503 and write nothing",
    async (_, secret) => {
      const t = await setup();
      const { userId } = await signUp(t, "victim");
      vi.stubEnv("CLERK_WEBHOOK_SECRET", secret);
      const errors = vi.spyOn(console, "error").mockImplementation(() => {});
      const before = await dump(t);
      const deleted = await t.fetch("/clerk/webhook", unsigned(userDeleted("victim")));
      expect(deleted.status).toBe(503);
      expect(await deleted.json()).toMatchObject({ code: "UNAVAILABLE" });
      // Signed with the broken secret itself, where svix can sign with it at all.
      let forgedWith: string | null = null;
      try {
        new Webhook(secret);
        forgedWith = secret;
      } catch {
        // svix cannot use it either
      }
      if (forgedWith !== null) {
        const created = await deliverClerk(
          t,
          userEvent("user.created", "minted", "m@example.com"),
          {
            secret: forgedWith,
          },
        );
        expect(created.status).toBe(503);
      }
      expect(await dump(t)).toEqual(before);
      expect((await t.run(async (ctx) => await ctx.db.get("users", userId)))!.deletedAt).toBe(
        undefined,
      );
      // Logged once per cold start (this test file is one), not once per delivery.
      await t.fetch("/clerk/webhook", unsigned(userDeleted("victim")));
      expect(
        errors.mock.calls.filter((call) =>
          String(call[0]).includes("Webhook endpoint unavailable"),
        ),
      ).toHaveLength(secret === "whsec_not-valid-base64!" ? 1 : 0);
      errors.mockRestore();
    },
  );

  test("a valid secret and no svix headers at all: 401, nothing written", async () => {
    const t = await setup();
    await signUp(t, "victim");
    const before = await dump(t);
    const response = await t.fetch("/clerk/webhook", unsigned(userDeleted("victim")));
    expect(response.status).toBe(401);
    expect(await dump(t)).toEqual(before);
  });
});
