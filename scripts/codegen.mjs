#!/usr/bin/env node
// `npm run codegen`: regenerate convex/_generated/ offline, byte for byte what `convex dev` and
// `convex deploy` write after a push.
//
// `convex codegen --system-udfs` (the usual offline codegen) writes an older flavour: no
// `components` export in api.js/api.d.ts and an untyped `env` in server.*, so running the app
// dirtied git and codegen flipped it back. Here the CLI's own push codegen runs instead, against
// scripts/lib/stubDeployment.mjs on 127.0.0.1 standing in for the deployment: it answers the two
// requests that codegen makes with what a backend answers for this app (no convex.config.ts), and
// nothing is deployed anywhere.
import { spawn } from "node:child_process";
import { startStubDeployment } from "./lib/stubDeployment.mjs";

const stub = await startStubDeployment();
const code = await new Promise((resolve) => {
  const child = spawn(
    "npx",
    [
      "convex",
      "codegen",
      "--typecheck",
      "disable",
      "--url",
      stub.url,
      "--admin-key",
      "offline-stub",
    ],
    // CI=1: non-interactive, and the CLI reports no crash to Sentry (offline, that would hang).
    { stdio: ["inherit", "pipe", "pipe"], env: { ...process.env, CI: "1" } },
  );
  // The push codegen announces an upload; here nothing leaves this machine, so say that instead.
  const relay = (from, to) =>
    from.on("data", (chunk) =>
      to.write(
        String(chunk).replace(
          /Uploading functions to Convex\.*/g,
          "Reading convex/ (offline: nothing is uploaded; a local stub stands in for the deployment)...",
        ),
      ),
    );
  relay(child.stdout, process.stdout);
  relay(child.stderr, process.stderr);
  child.on("close", (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0)));
});
await stub.close();
process.exit(code);
