#!/usr/bin/env node
// `npm run dev`: `convex dev --run plans:seedPlans` as an anonymous local deployment (no Convex
// login, no prompt). The CLI keeps the terminal (stdin, stdout, stderr untouched, so prompts and
// spinners work); extra arguments are passed on (`npm run dev -- --tail-logs always`).
// The CLI bundles and pushes the components of convex/convex.config.ts with the app, so they need
// no step of their own here.
//
// The first run downloads Convex's local backend and dashboard. Offline, the CLI then fails with
// "Failed to fetch latest backend version", a stack trace and a Sentry DNS error that say nothing
// useful, so when no local backend has been downloaded yet and Convex's hosts do not resolve,
// this says so in one plain sentence before (instead of) starting the CLI.
import { spawn } from "node:child_process";
import { lookup } from "node:dns/promises";
import { existsSync, readdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const projectDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const cli = path.join(projectDir, "node_modules", "convex", "bin", "main.js");

/** Where the CLI caches the local backend binaries (cacheDir() in the CLI's utils). */
function binariesDir() {
  const base =
    process.platform === "win32"
      ? (process.env.LOCALAPPDATA ?? path.join(os.homedir(), "AppData", "Local"))
      : path.join(os.homedir(), ".cache");
  return path.join(base, "convex", "binaries");
}

function hasDownloadedBackend() {
  const dir = binariesDir();
  if (!existsSync(dir)) return false;
  const binary = process.platform === "win32" ? "convex-local-backend.exe" : "convex-local-backend";
  return readdirSync(dir).some((version) => existsSync(path.join(dir, version, binary)));
}

/** True when a host the first run downloads from does not resolve (no internet). */
async function offline() {
  const resolves = (host) =>
    Promise.race([
      lookup(host).then(
        () => true,
        () => false,
      ),
      new Promise((resolve) => setTimeout(() => resolve(false), 3000).unref()),
    ]);
  const [version, github] = await Promise.all([
    resolves("version.convex.dev"),
    resolves("github.com"),
  ]);
  return !version || !github;
}

if (!hasDownloadedBackend() && (await offline())) {
  console.error(
    "npm run dev needs internet the first time: it downloads Convex's local backend and dashboard. Connect and run it again.",
  );
  process.exit(1);
}

const child = spawn(
  process.execPath,
  [cli, "dev", "--run", "plans:seedPlans", ...process.argv.slice(2)],
  { cwd: projectDir, stdio: "inherit", env: { ...process.env, CONVEX_AGENT_MODE: "anonymous" } },
);
// Ctrl-C reaches the CLI too (same terminal); wait for it to finish instead of dying first.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => child.kill(signal));
}
child.on("exit", (code) => process.exit(code ?? 1));
