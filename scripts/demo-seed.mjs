#!/usr/bin/env node
// `npm run demo:seed [-- --clerk-id user_... --email you@example.com]`: demo data in the local
// deployment (convex/demo.ts; it refuses anything but a local deployment). Runs plans:seedPlans
// first, then demo:seed through `npx convex run`.
import { spawnSync } from "node:child_process";

const args = process.argv.slice(2);
const option = (name) => {
  const i = args.indexOf(name);
  return i === -1 ? undefined : args[i + 1];
};
if (args.includes("--help")) {
  console.log("Usage: npm run demo:seed [-- --clerk-id <Clerk user id> --email <address>]");
  process.exit(0);
}
const seedArgs = {};
if (option("--clerk-id") !== undefined) seedArgs.clerkId = option("--clerk-id");
if (option("--email") !== undefined) seedArgs.email = option("--email");

for (const [fn, fnArgs] of [
  ["plans:seedPlans", {}],
  ["demo:seed", seedArgs],
]) {
  const run = spawnSync("npx", ["convex", "run", fn, JSON.stringify(fnArgs)], {
    stdio: "inherit",
  });
  if (run.status !== 0) {
    console.error(
      `npx convex run ${fn} failed: is the local deployment running (npm run dev in another terminal)?`,
    );
    process.exit(run.status ?? 1);
  }
}
