/**
 * Access-control matrix: every public query, mutation and action, found from the modules (not
 * a hand-kept list), called as each kind of caller, must give the documented outcome; a refusal
 * must write nothing. A public function without a row fails, naming it. Every HTTP route is
 * sent forged credentials (tests/support/httpRoutes.ts): 401, nothing written.
 *
 * Adding a function = one row in MATRIX below: the arguments (pointing at the owner's
 * resources) and the outcome for each of the six callers. The row is typed against the
 * generated `api`, so a missing row also fails `tsc` once codegen has run.
 */
import { describe, expect, test } from "vitest";
import { internal } from "../convex/_generated/api";
import { isAppError, type ErrorCode } from "../convex/lib/errors";
import { RATE_LIMITS, type RateLimitName } from "../convex/lib/rateLimits";
import {
  CALLERS,
  buildWorld,
  callByPath,
  clientFor,
  discoverFunctions,
  expectRejectedWithoutWrites,
  type Caller,
  type PublicPath,
  type World,
} from "./support/hardening";
import {
  HTTP_ROUTES,
  checkCredentialsRefused,
  loadRouter,
  routeKey,
  routerRoutes,
} from "./support/httpRoutes";

/** What a caller gets: a result (optionally checked), exactly this value, or this error code. */
type Outcome =
  | { ok: true; check?: (result: unknown, world: World) => void }
  | { value: unknown }
  | { code: ErrorCode };

type MatrixRow = {
  /** Arguments pointing at the owner's resources (the same for every caller). */
  args: (world: World) => Record<string, unknown>;
  expect: Record<Caller, Outcome>;
};

const ok: Outcome = { ok: true };
const UNAVAILABLE: Outcome = { code: "UNAVAILABLE" };
const UNAUTHENTICATED: Outcome = { code: "UNAUTHENTICATED" };
const FORBIDDEN: Outcome = { code: "FORBIDDEN" };
const NOT_FOUND: Outcome = { code: "NOT_FOUND" };
const INVALID_TRANSITION: Outcome = { code: "INVALID_TRANSITION" };
/** Signed-up callers only; the world's users have no subscription, so changes are refused. */
const subscriberOnly = (signedUp: Outcome): Record<Caller, Outcome> => ({
  anonymous: UNAUTHENTICATED,
  unregistered: NOT_FOUND,
  stranger: signedUp,
  owner: signedUp,
  admin: signedUp,
  deleted: FORBIDDEN,
});
const PAGE = { numItems: 10, cursor: null };
const EMPTY_PAGE = { page: [], isDone: true, continueCursor: "" };

/** Everyone gets the same outcome (public, no sign-in needed). */
const everyone = (outcome: Outcome) =>
  Object.fromEntries(CALLERS.map((caller) => [caller, outcome])) as Record<Caller, Outcome>;

/** Checks that a result is the caller's own user document. */
const ownUser = (caller: "owner" | "stranger" | "admin"): Outcome => ({
  ok: true,
  check: (result, world) => expect(result).toMatchObject({ _id: world.userId[caller] }),
});

/** Checks that a page holds only the caller's own rows, and at least one. */
const ownRows = (caller: "owner" | "stranger" | "admin"): Outcome => ({
  ok: true,
  check: (result, world) => {
    const rows = (result as { page: Array<{ userId: string }> }).page;
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((row) => row.userId === world.userId[caller])).toBe(true);
  },
});

/** The owner's two jobs, newest first. */
const ownersJobs: Outcome = {
  ok: true,
  check: (r, w) =>
    expect((r as { page: Array<{ _id: string }> }).page.map((j) => j._id)).toEqual([
      w.ownerJobId,
      w.runningJobId,
    ]),
};

/** A signed-up caller's empty page of their own rows (they have none). */
const noRows: Outcome = {
  ok: true,
  check: (result) => expect(result).toMatchObject({ page: [], isDone: true }),
};

export const MATRIX: { [Path in PublicPath]: MatrixRow } = {
  "plans:listPlans": {
    args: () => ({}),
    expect: everyone({
      ok: true,
      check: (plans) =>
        expect((plans as Array<{ name: string }>).map((p) => p.name)).toEqual([
          "starter",
          "creator",
          "studio",
        ]),
    }),
  },
  "plans:getPlan": {
    args: () => ({ name: "creator" }),
    expect: everyone({
      ok: true,
      check: (plan) => expect(plan).toMatchObject({ name: "creator", monthlyCredits: 250 }),
    }),
  },
  "users:getOrCreateUser": {
    args: (w) => ({ clerkId: w.clerkId.owner, email: `${w.clerkId.owner}@example.com` }),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: FORBIDDEN,
      stranger: FORBIDDEN,
      owner: ownUser("owner"),
      admin: FORBIDDEN,
      deleted: FORBIDDEN,
    },
  },
  "users:me": {
    args: () => ({}),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: { value: null },
      stranger: ownUser("stranger"),
      owner: ownUser("owner"),
      admin: ownUser("admin"),
      deleted: FORBIDDEN,
    },
  },
  "subscriptions:get": {
    args: () => ({}),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: { value: null },
      stranger: { value: null },
      owner: { value: null },
      admin: { value: null },
      deleted: FORBIDDEN,
    },
  },
  "subscriptions:previewChange": {
    args: () => ({ planName: "creator" }),
    expect: subscriberOnly({
      ok: true,
      check: (result) => expect(result).toMatchObject({ kind: "start", amount: 3100 }),
    }),
  },
  "subscriptions:changePlan": {
    args: () => ({ planName: "starter" }),
    expect: subscriberOnly(INVALID_TRANSITION),
  },
  "subscriptions:cancel": { args: () => ({}), expect: subscriberOnly(INVALID_TRANSITION) },
  "subscriptions:resume": { args: () => ({}), expect: subscriberOnly(INVALID_TRANSITION) },
  // Auto-renewal is off here (no TRUELAYER_MANDATE_TYPE): every signed-in caller is told so before
  // anything is read or written (tests/mandates.test.ts covers the rest).
  "subscriptions:setUpAutoRenewal": {
    args: () => ({}),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: UNAVAILABLE,
      stranger: UNAVAILABLE,
      owner: UNAVAILABLE,
      admin: UNAVAILABLE,
      deleted: UNAVAILABLE,
    },
  },
  // Nobody in the world has a mandate: nothing to revoke, nothing written.
  "subscriptions:cancelAutoRenewal": {
    args: () => ({}),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: NOT_FOUND,
      stranger: { value: { mandate: null } },
      owner: { value: { mandate: null } },
      admin: { value: { mandate: null } },
      deleted: FORBIDDEN,
    },
  },
  "credits:getCredits": {
    args: (w) => ({ userId: w.userId.owner }),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: NOT_FOUND,
      stranger: FORBIDDEN,
      owner: { ok: true, check: (r) => expect(r).toMatchObject({ credits: 70, reserved: 10 }) },
      admin: FORBIDDEN,
      deleted: FORBIDDEN,
    },
  },
  "credits:listLots": {
    args: () => ({ paginationOpts: PAGE }),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: { value: EMPTY_PAGE },
      stranger: ownRows("stranger"),
      owner: ownRows("owner"),
      admin: ownRows("admin"),
      deleted: FORBIDDEN,
    },
  },
  "credits:listLedger": {
    args: () => ({ paginationOpts: PAGE }),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: { value: EMPTY_PAGE },
      stranger: ownRows("stranger"),
      owner: ownRows("owner"),
      admin: ownRows("admin"),
      deleted: FORBIDDEN,
    },
  },
  "jobs:createJob": {
    args: (w) => ({ prompt: "a matrix job", durationSec: 5, userId: w.userId.owner }),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: NOT_FOUND,
      stranger: FORBIDDEN,
      owner: ok,
      admin: FORBIDDEN,
      deleted: FORBIDDEN,
    },
  },
  "jobs:generateImageUploadUrl": {
    args: () => ({}),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: NOT_FOUND,
      stranger: ok,
      owner: { ok: true, check: (url) => expect(url).toMatch(/^https:\/\//) },
      admin: ok,
      deleted: FORBIDDEN,
    },
  },
  "jobs:getJob": {
    args: (w) => ({ jobId: w.ownerJobId }),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: { value: null },
      stranger: { value: null },
      owner: {
        ok: true,
        check: (job, w) => expect(job).toMatchObject({ _id: w.ownerJobId, status: "queued" }),
      },
      admin: { value: null },
      deleted: FORBIDDEN,
    },
  },
  "jobs:listUserJobs": {
    args: (w) => ({ userId: w.userId.owner, paginationOpts: PAGE }),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: FORBIDDEN,
      stranger: FORBIDDEN,
      owner: ownersJobs,
      admin: FORBIDDEN,
      deleted: FORBIDDEN,
    },
  },
  "jobs:listJobs": {
    args: () => ({ paginationOpts: PAGE }),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: { value: EMPTY_PAGE },
      // Own data only: the stranger and the admin have no jobs.
      stranger: noRows,
      owner: ownersJobs,
      admin: noRows,
      deleted: FORBIDDEN,
    },
  },
  "jobs:cancelJob": {
    args: (w) => ({ jobId: w.ownerJobId }),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: NOT_FOUND,
      stranger: NOT_FOUND,
      owner: { value: { changed: true, status: "canceled" } },
      admin: NOT_FOUND,
      deleted: FORBIDDEN,
    },
  },
  "payments:listPayments": {
    args: () => ({ paginationOpts: PAGE }),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: { value: EMPTY_PAGE },
      stranger: ok,
      owner: ok,
      admin: ok,
      deleted: FORBIDDEN,
    },
  },
  "metrics:overview": {
    args: () => ({ hours: 24, endHour: 3_600_000 * 480_000 }),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: NOT_FOUND,
      stranger: FORBIDDEN,
      owner: FORBIDDEN,
      admin: { ok: true, check: (r) => expect(r).toMatchObject({ hours: 24 }) },
      deleted: FORBIDDEN,
    },
  },
  "notices:setEmailPreferences": {
    args: () => ({ creditsExpiring: false }),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: NOT_FOUND,
      // Each signed-up caller sets their own row's choice (tests/notices.test.ts checks whose).
      stranger: { value: { creditsExpiring: false } },
      owner: { value: { creditsExpiring: false } },
      admin: { value: { creditsExpiring: false } },
      deleted: FORBIDDEN,
    },
  },
  // The matrix runs without TrueLayer configured: every signed-in caller gets the clear
  // "not configured" refusal before anything is written (tests/payments.test.ts covers the rest).
  "payments:createCheckout": {
    args: () => ({ planName: "creator" }),
    expect: {
      anonymous: UNAUTHENTICATED,
      unregistered: UNAVAILABLE,
      stranger: UNAVAILABLE,
      owner: UNAVAILABLE,
      admin: UNAVAILABLE,
      deleted: UNAVAILABLE,
    },
  },
};

const rows: Record<string, MatrixRow | undefined> = MATRIX;
const discovered = await discoverFunctions();
const publicFunctions = discovered.filter((fn) => fn.visibility === "public");

function describeOutcome(outcome: Outcome): string {
  return "code" in outcome
    ? outcome.code
    : "value" in outcome
      ? `returns ${JSON.stringify(outcome.value)}`
      : "ok";
}

describe("function discovery", () => {
  test("every registered function is exactly one of public or internal", () => {
    expect(discovered.filter((fn) => fn.visibility === "unknown").map((fn) => fn.path)).toEqual([]);
  });

  test("every public function in api has a row in the matrix", () => {
    const unlisted = publicFunctions.map((fn) => fn.path).filter((path) => !rows[path]);
    expect(unlisted, "public functions without a MATRIX row").toEqual([]);
  });

  test("every row is a public function: internal functions are not in api", () => {
    // `api` itself is a proxy that answers any path at runtime, so the check goes through the
    // rows, whose keys tsc holds to exactly the generated `api` (PublicPath).
    const publicPaths = new Set(publicFunctions.map((fn) => fn.path));
    const internalPaths = new Set(
      discovered.filter((fn) => fn.visibility === "internal").map((fn) => fn.path),
    );
    expect(internalPaths.size).toBeGreaterThan(0);
    expect(
      Object.keys(MATRIX).filter((path) => internalPaths.has(path)),
      "rows (generated api) naming an internal function",
    ).toEqual([]);
    expect(
      Object.keys(MATRIX).filter((path) => !publicPaths.has(path)),
      "rows naming no public function",
    ).toEqual([]);
  });
});

describe.each(publicFunctions)("$path ($kind)", (fn) => {
  const row = rows[fn.path];
  if (row === undefined) {
    test("has a row in the access matrix", () => {
      expect.fail(
        `${fn.path} is a public ${fn.kind} with no row in MATRIX (tests/accessMatrix.test.ts).`,
      );
    });
    return;
  }
  const cells = CALLERS.map((caller) => ({
    caller,
    outcome: row.expect[caller],
    label: describeOutcome(row.expect[caller]),
  }));
  test.each(cells)("as $caller: $label", async ({ caller, outcome }) => {
    const world = await buildWorld();
    const call = () => callByPath(clientFor(world, caller), fn, row.args(world));
    if ("code" in outcome) {
      await expectRejectedWithoutWrites(world.t, call, { code: outcome.code });
    } else if ("value" in outcome) {
      expect(await call()).toEqual(outcome.value);
    } else {
      const result = await call();
      outcome.check?.(result, world);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Rate limits (convex/lib/rateLimits.ts; payments:createCheckout in tests/rateLimits.test.ts,
// which needs TrueLayer configured)

/** The public functions with a per-user limit, and the one of its limits the owner exhausts. */
const RATE_LIMITED: { path: PublicPath; limit: RateLimitName }[] = [
  { path: "jobs:createJob", limit: "createJob" },
  { path: "jobs:generateImageUploadUrl", limit: "imageUploadUrl" },
];

describe("rate limits: the owner past a limit gets RATE_LIMITED, nothing written", () => {
  test.each(RATE_LIMITED)("$path", async ({ path, limit }) => {
    const fn = publicFunctions.find((candidate) => candidate.path === path)!;
    const world = await buildWorld();
    await world.t.mutation(internal.credits.grantCredits, {
      userId: world.userId.owner,
      credits: 1000,
      note: "rate-limit row",
    });
    const call = () => callByPath(clientFor(world, "owner"), fn, MATRIX[path].args(world));
    // Up to the capacity (the world's own setup may have taken tokens already).
    for (let i = 0; i < RATE_LIMITS[limit].capacity; i++) {
      const refused = await call().then(
        () => false,
        (error: unknown) => isAppError(error) && error.data.code === "RATE_LIMITED",
      );
      if (refused) break;
    }
    await expectRejectedWithoutWrites(world.t, call, { code: "RATE_LIMITED" });
    // Another user is not limited by the owner's calls.
    await callByPath(clientFor(world, "admin"), fn, MATRIX[path].args(world)).catch(
      (error: unknown) => expect(JSON.stringify(error)).not.toContain("RATE_LIMITED"),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// HTTP routes

const router = (await loadRouter())!;

describe("HTTP routes: forged credentials are a 401 that writes nothing", () => {
  {
    test("every route of convex/http.ts has a row, and every row a route", () => {
      const served = routerRoutes(router);
      const listed = HTTP_ROUTES.map((row) => routeKey(row.method, row.path));
      expect(
        served.filter((route) => !listed.includes(route)),
        "routes without a row in HTTP_ROUTES (tests/support/httpRoutes.ts)",
      ).toEqual([]);
      expect(
        listed.filter((route) => !served.includes(route)),
        "rows for routes convex/http.ts does not serve",
      ).toEqual([]);
    });
    for (const row of HTTP_ROUTES) {
      test(`${routeKey(row.method, row.path)} (${row.scheme.name})`, async () => {
        await checkCredentialsRefused(await buildWorld(), row);
      });
    }
  }
});
