import type { AuthConfig } from "convex/server";
import { env } from "./_generated/server";

// Clerk is wired only when its issuer is configured, so a fresh deployment pushes with no
// env var set and functions can be tried with `npx convex run --identity ...`.
const clerkIssuer = env.CLERK_JWT_ISSUER_DOMAIN;

export default {
  providers: clerkIssuer ? [{ domain: clerkIssuer, applicationID: "convex" }] : [],
} satisfies AuthConfig;
