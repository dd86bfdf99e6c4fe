import type { AuthConfig } from "convex/server";

// Clerk is wired only when CLERK_JWT_ISSUER_DOMAIN is set, so a fresh deployment pushes with no env
// var set (try functions with `npx convex run --identity ...`).
//
// The backend evaluates this file with a `process.env` Proxy whose every read of an unset
// variable throws ("Environment variable X is used in auth config file but its value was not
// set"), so `process.env.X ? ... : []` or `?? fallback` would fail the first push of a fresh
// deployment and `convex dev` would stop there. The throw is an ordinary JS exception, so the read
// is wrapped in try/catch: unset means no provider. Setting the variable later
// (`npx convex env set CLERK_JWT_ISSUER_DOMAIN https://...`) makes the backend re-evaluate this
// file at once, no re-push needed. tests/authConfig.test.ts evaluates it under such a Proxy.
function optionalEnv(name: string): string | undefined {
  try {
    return process.env[name]?.trim() || undefined;
  } catch {
    return undefined;
  }
}

const clerkIssuer = optionalEnv("CLERK_JWT_ISSUER_DOMAIN");

export default {
  providers: clerkIssuer ? [{ domain: clerkIssuer, applicationID: "convex" }] : [],
} satisfies AuthConfig;
