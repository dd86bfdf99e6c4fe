/**
 * Self-tests of the test harness in tests/support/: the HTTP route harness (httpRoutes.ts) must
 * catch routes that are broken on purpose (fixtureHttpRouter.ts, served in place of
 * convex/http.ts), and the TrueLayer helpers must produce what TrueLayer sends. These test the
 * tests, not the backend.
 */
import { describe, expect, test } from "vitest";
import type { World } from "./hardening";
import {
  bearerScheme,
  checkCredentialsRefused,
  checkHostileBody,
  fixtureWorld,
  genericHostileBodies,
  hostileBodiesFor,
  svixScheme,
  type HttpRouteRow,
} from "./httpRoutes";
import { generateEs512Key, jwksOf } from "./truelayer";

// ---------------------------------------------------------------------------------------------
// Forged credentials (what tests/accessMatrix.test.ts checks for every route)

describe("HTTP harness self-test (a fixture router)", () => {
  const grantBody = (w: World) => ({ userId: w.userId.owner });
  const route = (path: string, scheme = bearerScheme("FIXTURE_WORKER_SECRET")): HttpRouteRow => ({
    method: "POST",
    path,
    scheme,
    validBody: grantBody,
  });

  test("correct bearer and Svix routes pass", async () => {
    const world = await fixtureWorld();
    await checkCredentialsRefused(world, route("/fixture/bearer"));
    await checkCredentialsRefused(world, route("/fixture/svix", svixScheme("FIXTURE_SVIX_SECRET")));
  });

  test("a route that never checks credentials fails", async () => {
    const world = await fixtureWorld();
    await expect(checkCredentialsRefused(world, route("/fixture/open"))).rejects.toThrow(
      /no Authorization header: HTTP status/,
    );
  });

  test("a route that writes before refusing fails", async () => {
    const world = await fixtureWorld();
    await expect(
      checkCredentialsRefused(world, route("/fixture/writes-before-auth")),
    ).rejects.toThrow(/the database changed/);
  });

  test("a route that refuses everyone fails the positive control", async () => {
    const world = await fixtureWorld();
    await expect(
      checkCredentialsRefused(world, route("/fixture/bearer", bearerScheme("NOT_THE_ROUTES_VAR"))),
    ).rejects.toThrow(/valid credentials/);
  });
});

// ---------------------------------------------------------------------------------------------
// Hostile bodies (what tests/badInput.test.ts checks for every route)

describe("HTTP hostile-body harness self-test (a fixture router)", () => {
  const route = (path: string, scheme = bearerScheme("FIXTURE_WORKER_SECRET")): HttpRouteRow => ({
    method: "POST",
    path,
    scheme,
    validBody: (w) => ({ userId: w.userId.owner }),
  });
  const labels = genericHostileBodies({ userId: "x" }).map((hostile) => hostile.label);

  test.each([
    ["bearer", route("/fixture/bearer")],
    ["svix", route("/fixture/svix", svixScheme("FIXTURE_SVIX_SECRET"))],
  ])("a strict %s route refuses every generic hostile body", async (_name, fixture) => {
    const world = await fixtureWorld();
    const bodies = hostileBodiesFor(world, fixture);
    expect(bodies.map((hostile) => hostile.label)).toEqual(labels);
    for (const hostile of bodies) {
      await checkHostileBody(world, fixture, hostile);
    }
  });

  test.each([
    'duplicated key "userId"',
    "wrong Content-Type (text/plain)",
    "oversized JSON (10 MiB)",
  ])("a lenient route fails on: %s", async (label) => {
    const world = await fixtureWorld();
    const fixture = route("/fixture/lenient");
    const hostile = hostileBodiesFor(world, fixture).find((h) => h.label === label)!;
    await expect(checkHostileBody(world, fixture, hostile)).rejects.toThrow(/HTTP status/);
  });
});

// ---------------------------------------------------------------------------------------------
// TrueLayer helpers

test("jwksOf serves the TrueLayer key as a JWK", () => {
  const trueLayerKey = generateEs512Key("tl-webhooks-1");
  expect(JSON.parse(jwksOf(trueLayerKey)).keys[0]).toMatchObject({
    kid: "tl-webhooks-1",
    crv: "P-521",
  });
});
