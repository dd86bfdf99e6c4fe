// @vitest-environment node
/**
 * convex/auth.config.ts as the backend evaluates it: the module the Convex CLI uploads
 * (auth.config.js from the CLI's own bundler, `convex deploy --debug-bundle-path`, offline), run
 * in a fresh V8 context whose `process.env` is a Proxy like the one the backend installs
 * (udf-runtime setup.ts): every string key is looked up in the deployment's variables, and in the
 * auth-config environment a key that is not set throws
 * "Environment variable X is used in auth config file but its value was not set"
 * (crates/isolate/src/environment/auth_config.rs). `in` and Object.keys see nothing, as there.
 * Math.random and Date are refused as in that environment too.
 *
 * check:deploy sets AUTH_CONFIG_BUNDLE_DIR to the bundle it has just built, so it is not built twice.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import vm from "node:vm";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { debugBundle } from "../scripts/lib/debugBundle.mjs";

let bundleDir: string;
let removeBundle = () => {};

beforeAll(async () => {
  const given = process.env.AUTH_CONFIG_BUNDLE_DIR;
  if (given) {
    bundleDir = given;
    return;
  }
  const result = await debugBundle();
  if (result.code !== 0)
    throw new Error(`The Convex CLI could not bundle convex/:\n${result.output}`);
  bundleDir = result.dir;
  removeBundle = result.remove;
});

afterAll(() => removeBundle());

function backendEnv(vars: Record<string, string>): object {
  return new Proxy(
    {},
    {
      get(target, prop, receiver) {
        if (typeof prop !== "string") return Reflect.get(target, prop, receiver);
        if (Object.prototype.hasOwnProperty.call(vars, prop)) return vars[prop];
        throw new Error(
          `Environment variable ${prop} is used in auth config file but its value was not set`,
        );
      },
    },
  );
}

/** Evaluates an auth config module (ESM, no imports) and returns its default export as JSON. */
function evaluateAuthConfig(source: string, vars: Record<string, string>): unknown {
  // The backend refuses any import while evaluating the auth config: the module must be one file.
  expect(source).not.toMatch(/^\s*import[\s{*"']/m);
  const exportStatement = /^export\s*\{\s*([\w$]+) as default\s*\};?\s*$/m;
  const match = source.match(exportStatement);
  if (!match) throw new Error("auth.config.js has no `export { x as default }` statement");
  const body = source.replace(exportStatement, `return ${match[1]};`);
  const context = vm.createContext({});
  vm.runInContext(
    `
    Math.random = () => { throw new Error("Math.random unsupported when evaluating auth config file"); };
    Date = new Proxy(Date, {
      construct() { throw new Error("Date unsupported when evaluating auth config file"); },
      get(target, prop) {
        if (prop === "now") return () => { throw new Error("Date unsupported when evaluating auth config file"); };
        return Reflect.get(target, prop);
      },
    });
    `,
    context,
  );
  context.process = { env: backendEnv(vars) };
  const config: unknown = vm.runInContext(`(function () {\n${body}\n})()`, context);
  // The backend keeps what JSON.stringify gives (auth_config.rs), so compare that.
  return JSON.parse(JSON.stringify(config));
}

function authConfigSource(): string {
  return readFileSync(path.join(bundleDir, "isolate", "auth.config.js"), "utf8");
}

describe("auth.config.ts as the backend evaluates it", () => {
  test("the harness throws like the backend on an unset variable", () => {
    // The previous auth.config.ts, in effect: a read guarded by a conditional still throws.
    const unguarded = `const issuer = process.env.CLERK_JWT_ISSUER_DOMAIN;
var config = { providers: issuer ? [{ domain: issuer, applicationID: "convex" }] : [] };
export { config as default };`;
    expect(() => evaluateAuthConfig(unguarded, {})).toThrow(
      "Environment variable CLERK_JWT_ISSUER_DOMAIN is used in auth config file but its value was not set",
    );
    expect(evaluateAuthConfig(unguarded, { CLERK_JWT_ISSUER_DOMAIN: "https://a.example" })).toEqual(
      {
        providers: [{ domain: "https://a.example", applicationID: "convex" }],
      },
    );
  });

  test("with CLERK_JWT_ISSUER_DOMAIN unset it evaluates to no providers", () => {
    expect(evaluateAuthConfig(authConfigSource(), {})).toEqual({ providers: [] });
  });

  test("with CLERK_JWT_ISSUER_DOMAIN set it configures Clerk for that issuer", () => {
    const domain = "https://cineweave-test.clerk.accounts.dev";
    const vars = {
      CLERK_JWT_ISSUER_DOMAIN: domain,
      // Other variables of a configured deployment change nothing.
      WORKER_SECRET: "s3cret",
    };
    expect(evaluateAuthConfig(authConfigSource(), vars)).toEqual({
      providers: [{ domain, applicationID: "convex" }],
    });
  });

  test("an empty or blank CLERK_JWT_ISSUER_DOMAIN counts as unset", () => {
    expect(evaluateAuthConfig(authConfigSource(), { CLERK_JWT_ISSUER_DOMAIN: "  " })).toEqual({
      providers: [],
    });
  });
});
