/// <reference types="vite/client" />
/**
 * The HTTP half of the access matrix and of the bad-input corpus: one row per route of
 * `convex/http.ts`, a credential scheme per kind of caller authentication, and the harness that
 * checks each row. `tests/accessMatrix.test.ts` sends every route forged credentials (401, nothing
 * written); `tests/badInput.test.ts` sends it hostile bodies with valid credentials (a 4xx JSON
 * `{ code, message }`, nothing written). A route in the router without a row fails both.
 *
 * Adding a route = adding one row to HTTP_ROUTES below: its method, path, credential scheme
 * (`bearerScheme`, `svixScheme` or `trueLayerScheme`) and `validBody`, a request the route accepts
 * (2xx) with valid credentials. The harness sends `validBody` once as a positive control, so a route
 * that refuses everyone cannot pass. A route authenticated another way needs a CredentialScheme
 * next to the three below.
 *
 * The harness's own tests (against routes broken on purpose, tests/support/fixtureHttpRouter.ts)
 * are in tests/support/harness.test.ts.
 */
import { vi, expect } from "vitest";
import { Webhook } from "svix";
import type { HttpRouter } from "convex/server";
import type { HttpErrorCode } from "../../convex/lib/http";
import { convexTest } from "convex-test";
import schema from "../../convex/schema";
import { buildWorld, snapshotDatabase, type World } from "./hardening";
import { identityFor, modules, registerComponents } from "./setup";
import { api } from "../../convex/_generated/api";
import {
  PRODUCTION_JKU,
  SANDBOX_JKU,
  generateEs512Key,
  signWebhook,
  trueLayerNetwork,
  type EcKey,
} from "./truelayer";
import type { TestConvex } from "./setup";

export type HttpRequestParts = {
  headers: Record<string, string>;
  body: string;
  /** The path and query sent, when not the row's `path` (a credential in the URL). */
  path?: string;
};

/** How a route authenticates its caller, and how to forge that badly. */
export type CredentialScheme = {
  name: string;
  /** Env vars the route reads (stubbed while the harness calls it). */
  env: Record<string, string>;
  /** Headers that authenticate `body` correctly. */
  sign(body: string): Record<string, string> | Promise<Record<string, string>>;
  /** Requests that must be refused with 401 (each with the body it sends). */
  forgeries(
    body: string,
  ):
    | Array<{ label: string } & HttpRequestParts>
    | Promise<Array<{ label: string } & HttpRequestParts>>;
  /** Stubs what the route fetches while it is called (e.g. a provider's JWKS). */
  stubNetwork?(): void;
};

export type HttpRouteRow = {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  path: string;
  scheme: CredentialScheme;
  /** A body the route accepts with valid credentials (JSON-encoded by the harness). */
  validBody: (world: World) => unknown;
  /** The body is not JSON: `validBody` is sent as it is, and the generic bodies are not sent. */
  rawBody?: boolean;
  /** Routes whose credential is in the URL: a fresh valid path and query for each request. */
  requestPath?: (world: World) => Promise<string>;
  /** Route-specific hostile bodies, sent with valid credentials, on top of the generic ones. */
  hostileBodies?: (world: World) => HostileBody[];
};

/** A WebP header (every byte ASCII, so the harness's string bodies carry it unchanged). */
export const WEBP_IMAGE = "RIFF\u0014\u0000\u0000\u0000WEBPVP8 \u0008\u0000\u0000\u0000harness!";

/** The routes of convex/http.ts, one row each. */
export const HTTP_ROUTES: HttpRouteRow[] = [
  {
    method: "POST",
    path: "/images/upload",
    scheme: uploadTokenScheme(),
    rawBody: true,
    validBody: () => WEBP_IMAGE,
    requestPath: async (w) => {
      const as = w.t.withIdentity(identityFor(w.clerkId.owner));
      const url = new URL(await as.mutation(api.jobs.generateImageUploadUrl, {}));
      return url.pathname + url.search;
    },
    hostileBodies: () => [
      { label: "empty image", body: "", expect: BAD_REQUEST },
      {
        label: "not a WebP (text declared image/webp)",
        body: "hello, not an image at all",
        expect: { status: [415], code: "UNSUPPORTED_MEDIA_TYPE" },
      },
      {
        label: "a WebP declared as PNG",
        body: WEBP_IMAGE,
        contentType: "image/png",
        expect: { status: [415], code: "UNSUPPORTED_MEDIA_TYPE" },
      },
      {
        label: "an SVG",
        body: "<svg xmlns='http://www.w3.org/2000/svg'/>",
        contentType: "image/svg+xml",
        expect: { status: [415], code: "UNSUPPORTED_MEDIA_TYPE" },
      },
      {
        label: "oversized image (10 MiB + 1)",
        body: WEBP_IMAGE + "x".repeat(10 * 1024 * 1024 + 1 - WEBP_IMAGE.length),
        expect: { status: [413], code: "PAYLOAD_TOO_LARGE" },
      },
    ],
  },
  {
    method: "POST",
    path: "/worker/claim",
    scheme: bearerScheme("WORKER_SECRET"),
    validBody: () => ({ workerId: "gpu-2" }),
  },
  {
    method: "POST",
    path: "/worker/jobs/heartbeat",
    scheme: bearerScheme("WORKER_SECRET"),
    validBody: (w) => ({ jobId: w.runningJobId, workerId: "gpu-1", progress: 10 }),
  },
  {
    method: "POST",
    path: "/worker/jobs/complete",
    scheme: bearerScheme("WORKER_SECRET"),
    validBody: (w) => ({
      jobId: w.runningJobId,
      workerId: "gpu-1",
      r2Url: "https://videos.example.com/v.mp4",
    }),
  },
  {
    method: "POST",
    path: "/worker/jobs/fail",
    scheme: bearerScheme("WORKER_SECRET"),
    validBody: (w) => ({ jobId: w.runningJobId, workerId: "gpu-1", error: "CUDA OOM" }),
  },
  {
    method: "POST",
    path: "/truelayer/webhook",
    scheme: trueLayerScheme(),
    validBody: () => ({
      type: "payment_executed",
      event_version: 1,
      event_id: "evt-valid",
      payment_id: "tl-unknown",
    }),
  },
  {
    method: "POST",
    path: "/clerk/webhook",
    scheme: svixScheme("CLERK_WEBHOOK_SECRET"),
    validBody: () => ({
      type: "user.created",
      data: {
        id: "user_new",
        email_addresses: [{ id: "e1", email_address: "new@example.com" }],
        primary_email_address_id: "e1",
      },
    }),
  },
  {
    method: "POST",
    path: "/resend/webhook",
    scheme: svixScheme("RESEND_WEBHOOK_SECRET"),
    // A delivery event of an email this deployment never sent: recorded by no one, acknowledged.
    validBody: () => ({
      type: "email.delivered",
      created_at: "2026-01-31T10:00:00.000Z",
      data: {
        created_at: "2026-01-31T10:00:00.000Z",
        email_id: "re_unknown",
        from: "notices@cineweave.example",
        to: ["delivered@resend.dev"],
        subject: "x",
      },
    }),
  },
];

// ---------------------------------------------------------------------------------------------
// Credential schemes

/** The single-use token in an image upload URL (`?token=`, from `jobs.generateImageUploadUrl`). */
export function uploadTokenScheme(): CredentialScheme {
  const headers = { "Content-Type": "image/webp" };
  const path = "/images/upload";
  return {
    name: "upload URL token",
    env: {},
    sign: () => headers,
    forgeries: (body) =>
      (
        [
          ["no token", path],
          ["empty token", `${path}?token=`],
          ["unknown token", `${path}?token=${"ab".repeat(32)}`],
          ["malformed token", `${path}?token=../../secret`],
        ] as const
      ).map(([label, forged]) => ({ label, body, headers, path: forged })),
  };
}

const JSON_HEADERS = { "Content-Type": "application/json" };

/** `Authorization: Bearer <secret>` with the secret in env var `envVar` (the worker API). */
export function bearerScheme(envVar: string): CredentialScheme {
  const secret = `test-${envVar.toLowerCase()}-8f3a1c9e2b7d4f60`;
  const flipped = secret.slice(0, -1) + (secret.endsWith("0") ? "1" : "0");
  const auth = (value: string | null): Record<string, string> =>
    value === null ? {} : { Authorization: value };
  return {
    name: `bearer ${envVar}`,
    env: { [envVar]: secret },
    sign: () => ({ ...JSON_HEADERS, Authorization: `Bearer ${secret}` }),
    forgeries: (body) =>
      (
        [
          ["no Authorization header", null],
          ["empty bearer token", "Bearer "],
          ["wrong secret", "Bearer not-the-secret"],
          ["secret with its last character changed", `Bearer ${flipped}`],
          ["secret plus a suffix", `Bearer ${secret}x`],
          ["first half of the secret", `Bearer ${secret.slice(0, secret.length / 2)}`],
          ["secret without the Bearer scheme", secret],
          ["secret as Basic credentials", `Basic ${btoa(`worker:${secret}`)}`],
        ] as const
      ).map(([label, value]) => ({ label, body, headers: { ...JSON_HEADERS, ...auth(value) } })),
  };
}

/** Svix-signed webhooks (Clerk), secret `whsec_...` in env var `envVar`. */
export function svixScheme(envVar: string): CredentialScheme {
  const secret = `whsec_${btoa("test-svix-secret-for-the-harness")}`;
  const otherSecret = `whsec_${btoa("some-other-svix-secret-entirely")}`;
  const signed = (body: string, options: { id?: string; at?: Date; key?: string } = {}) => {
    const id = options.id ?? "msg_harness_1";
    const at = options.at ?? new Date();
    return {
      ...JSON_HEADERS,
      "svix-id": id,
      "svix-timestamp": String(Math.floor(at.getTime() / 1000)),
      "svix-signature": new Webhook(options.key ?? secret).sign(id, at, body),
    };
  };
  return {
    name: `svix ${envVar}`,
    env: { [envVar]: secret },
    sign: (body) => signed(body),
    forgeries: (body) => {
      const minutes = (n: number) => new Date(Date.now() + n * 60_000);
      return [
        { label: "no svix headers", body, headers: { ...JSON_HEADERS } },
        { label: "signed with another secret", body, headers: signed(body, { key: otherSecret }) },
        // Same JSON meaning, different bytes: the signature covers the raw body.
        {
          label: "tampered body (valid signature of the original)",
          body: `${body} `,
          headers: signed(body),
        },
        {
          label: "signature for another svix-id",
          body,
          headers: { ...signed(body, { id: "msg_a" }), "svix-id": "msg_b" },
        },
        { label: "timestamp 10 minutes old", body, headers: signed(body, { at: minutes(-10) }) },
        { label: "timestamp 10 minutes ahead", body, headers: signed(body, { at: minutes(10) }) },
        {
          label: "garbage signature",
          body,
          headers: {
            ...signed(body),
            "svix-signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
          },
        },
      ];
    },
  };
}

/**
 * TrueLayer's `Tl-Signature` (ES512 JWS over method, path, the timestamp header and the body,
 * with a `jku` naming TrueLayer's JWKS); the JWKS is served by a stubbed `fetch`.
 */
export function trueLayerScheme(): CredentialScheme {
  const key = generateEs512Key("tl-hardening");
  const attacker = generateEs512Key("tl-hardening"); // same kid, another key
  const timestamp = "2026-11-25T00:00:00Z";
  const headersFor = async (
    body: string,
    options: { key?: EcKey; jku?: string | null; signedBody?: string } = {},
  ) => ({
    ...JSON_HEADERS,
    "X-TL-Webhook-Timestamp": timestamp,
    "Tl-Signature": await signWebhook(
      options.key ?? key,
      options.signedBody ?? body,
      { "X-TL-Webhook-Timestamp": timestamp },
      options.jku === undefined ? SANDBOX_JKU : options.jku,
    ),
  });
  return {
    name: "TrueLayer Tl-Signature",
    env: { TRUELAYER_ENVIRONMENT: "sandbox" },
    stubNetwork: () => {
      trueLayerNetwork(key);
    },
    sign: (body) => headersFor(body),
    forgeries: async (body) => [
      {
        label: "no Tl-Signature",
        body,
        headers: { ...JSON_HEADERS, "X-TL-Webhook-Timestamp": timestamp },
      },
      {
        label: "signed by another key with the same kid",
        body,
        headers: await headersFor(body, { key: attacker }),
      },
      {
        label: "jku of another host",
        body,
        headers: await headersFor(body, { jku: "https://evil.example.com/.well-known/jwks" }),
      },
      {
        label: "production jku on a sandbox deployment",
        body,
        headers: await headersFor(body, { jku: PRODUCTION_JKU }),
      },
      { label: "no jku", body, headers: await headersFor(body, { jku: null }) },
      {
        label: "tampered body (valid signature of the original)",
        body: body.replace("payment_executed", "payment_settled"),
        headers: await headersFor(body),
      },
      {
        label: "garbage signature",
        body,
        headers: { ...JSON_HEADERS, "X-TL-Webhook-Timestamp": timestamp, "Tl-Signature": "a..b" },
      },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Hostile bodies

export type HttpExpectation = { status: number[]; code: HttpErrorCode };

export type HostileBody = {
  label: string;
  body: string;
  /** Replaces Content-Type (signed with valid credentials all the same). */
  contentType?: string;
  expect: HttpExpectation;
};

const BAD_REQUEST: HttpExpectation = { status: [400], code: "INVALID_ARGUMENT" };

/** Malformed bodies every JSON route must refuse (4xx, `{ code, message }`, nothing written). */
export function genericHostileBodies(validBody: unknown): HostileBody[] {
  const valid = JSON.stringify(validBody);
  const bodies: HostileBody[] = [
    { label: "empty body", body: "", expect: BAD_REQUEST },
    { label: "not JSON", body: "not json", expect: BAD_REQUEST },
    {
      label: "truncated JSON",
      body: valid.slice(0, Math.max(1, valid.length - 1)),
      expect: BAD_REQUEST,
    },
    { label: "JSON null", body: "null", expect: BAD_REQUEST },
    { label: "JSON array", body: `[${valid}]`, expect: BAD_REQUEST },
    { label: "JSON string", body: JSON.stringify(valid), expect: BAD_REQUEST },
    {
      label: "20,000 nested arrays",
      body: "[".repeat(20_000) + "]".repeat(20_000),
      expect: BAD_REQUEST,
    },
    {
      label: "oversized JSON (10 MiB)",
      body: JSON.stringify({ ...(validBody as object), padding: "x".repeat(10 * 1024 * 1024) }),
      expect: { status: [413], code: "PAYLOAD_TOO_LARGE" },
    },
    {
      label: "wrong Content-Type (text/plain)",
      body: valid,
      contentType: "text/plain",
      expect: { status: [415], code: "UNSUPPORTED_MEDIA_TYPE" },
    },
    {
      label: "wrong Content-Type (form encoded)",
      body: valid,
      contentType: "application/x-www-form-urlencoded",
      expect: { status: [415], code: "UNSUPPORTED_MEDIA_TYPE" },
    },
  ];
  const [firstKey] = Object.keys((validBody ?? {}) as object);
  if (firstKey !== undefined && valid.startsWith("{")) {
    // The first key twice: JSON.parse keeps the last one, other parsers the first.
    bodies.push({
      label: `duplicated key ${JSON.stringify(firstKey)}`,
      body: `{${JSON.stringify(firstKey)}:"duplicate",${valid.slice(1)}`,
      expect: BAD_REQUEST,
    });
  }
  return bodies;
}

// ---------------------------------------------------------------------------------------------
// The router and the harness

const httpModule = import.meta.glob<{ default: HttpRouter }>("../../convex/http.ts");

/** convex/http.ts's router, or null while the file does not exist. */
export async function loadRouter(): Promise<HttpRouter | null> {
  const load = httpModule["../../convex/http.ts"];
  return load === undefined ? null : (await load()).default;
}

export const routeKey = (method: string, path: string) => `${method.toUpperCase()} ${path}`;

/**
 * "POST /worker/claim" for every route the router serves (prefix routes end with "*"). CORS
 * preflights (OPTIONS, answered by convex-helpers' CORS router) take no credentials and run
 * nothing: they are checked in tests/media.test.ts, not here.
 */
export function routerRoutes(router: HttpRouter): string[] {
  return router
    .getRoutes()
    .filter(([, method]) => method !== "OPTIONS")
    .map(([path, method]) => routeKey(method, path));
}

async function withScheme<T>(scheme: CredentialScheme, run: () => Promise<T>): Promise<T> {
  for (const [name, value] of Object.entries(scheme.env)) {
    vi.stubEnv(name, value);
  }
  scheme.stubNetwork?.();
  try {
    return await run();
  } finally {
    vi.unstubAllEnvs();
    vi.unstubAllGlobals();
  }
}

async function send(t: TestConvex, row: HttpRouteRow, request: HttpRequestParts) {
  const response = await t.fetch(request.path ?? row.path, {
    method: row.method,
    headers: request.headers,
    body: row.method === "GET" ? undefined : request.body,
  });
  const text = await response.text();
  let json: unknown = undefined;
  try {
    json = JSON.parse(text);
  } catch {
    // Checked below: every refusal must be JSON.
  }
  return { status: response.status, contentType: response.headers.get("content-type"), text, json };
}

/** Sends `request`, which must be refused as `expectation` says, and checks nothing was written. */
export async function expectHttpRefusedWithoutWrites(
  t: TestConvex,
  row: HttpRouteRow,
  request: HttpRequestParts,
  expectation: HttpExpectation,
) {
  const before = await snapshotDatabase(t);
  const response = await withScheme(row.scheme, () => send(t, row, request));
  expect(expectation.status, `HTTP status (body: ${response.text.slice(0, 200)})`).toContain(
    response.status,
  );
  expect(response.contentType ?? "").toMatch(/^application\/json/);
  expect(response.json).toMatchObject({ code: expectation.code, message: expect.any(String) });
  expect(await snapshotDatabase(t), "the database changed").toStrictEqual(before);
}

const UNAUTHORIZED: HttpExpectation = { status: [401], code: "UNAUTHENTICATED" };

/**
 * Every forgery of the route's credentials is a 401 that writes nothing; then, as a positive
 * control, the same body with valid credentials is accepted (2xx).
 */
export async function checkCredentialsRefused(world: World, row: HttpRouteRow) {
  const valid = row.validBody(world);
  const body = row.rawBody === true ? (valid as string) : JSON.stringify(valid);
  for (const forgery of await row.scheme.forgeries(body)) {
    await expectHttpRefusedWithoutWrites(world.t, row, forgery, UNAUTHORIZED).catch(
      (error: Error) => {
        error.message = `${routeKey(row.method, row.path)} with ${forgery.label}: ${error.message}`;
        throw error;
      },
    );
  }
  const path = await row.requestPath?.(world);
  const accepted = await withScheme(row.scheme, async () =>
    send(world.t, row, { headers: await row.scheme.sign(body), body, path }),
  );
  expect(
    accepted.status >= 200 && accepted.status < 300,
    `valid credentials must be accepted, got ${accepted.status}: ${accepted.text.slice(0, 200)}`,
  ).toBe(true);
}

/** The generic and the route's own hostile bodies, each signed with valid credentials. */
export function hostileBodiesFor(world: World, row: HttpRouteRow): HostileBody[] {
  const generic = row.rawBody === true ? [] : genericHostileBodies(row.validBody(world));
  return [...generic, ...(row.hostileBodies?.(world) ?? [])];
}

export async function checkHostileBody(world: World, row: HttpRouteRow, hostile: HostileBody) {
  const headers = { ...(await row.scheme.sign(hostile.body)) };
  if (hostile.contentType !== undefined) {
    headers["Content-Type"] = hostile.contentType;
  }
  // A fresh valid URL is made first: the refusal must then write nothing more.
  const path = await row.requestPath?.(world);
  await expectHttpRefusedWithoutWrites(
    world.t,
    row,
    { headers, body: hostile.body, path },
    hostile.expect,
  ).catch((error: Error) => {
    error.message = `${routeKey(row.method, row.path)} with ${hostile.label}: ${error.message}`;
    throw error;
  });
}

/** A world whose `convex/http.ts` is the fixture router (for the harness's own self-tests). */
export function fixtureWorld(): Promise<World> {
  return buildWorld(
    registerComponents(
      convexTest({
        schema,
        modules: { ...modules, "../../convex/http.ts": () => import("./fixtureHttpRouter") },
        transactionLimits: true,
      }),
    ),
  );
}
