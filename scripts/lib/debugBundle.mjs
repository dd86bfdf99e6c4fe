// Bundles convex/ with the Convex CLI's own bundler, offline: `convex deploy --debug-bundle-path`
// writes every module exactly as a push would upload it (isolate/ and node/ runtimes, plus
// auth.config.js) and stops before any request. The deployment URL is a throwaway stub on
// 127.0.0.1 that refuses every request, so nothing can be pushed even if the CLI changed.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startStubDeployment } from "./stubDeployment.mjs";

const projectDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/**
 * Runs the CLI's bundler. Resolves to `{ code, output, dir, requests, remove }`: the CLI's exit
 * code, its combined output, the bundle directory, the requests the stub saw (should be none), and
 * a function that deletes the bundle.
 */
export async function debugBundle({ echo = false } = {}) {
  const parent = mkdtempSync(path.join(tmpdir(), "cineweave-bundle-"));
  const dir = path.join(parent, "bundle");
  const stub = await startStubDeployment({ refuseAll: true });
  const args = [
    "convex",
    "deploy",
    "--codegen",
    "disable",
    "--typecheck",
    "disable",
    "--debug-bundle-path",
    dir,
    "--url",
    stub.url,
    "--admin-key",
    "offline-stub",
    "--yes",
  ];
  const { code, output } = await new Promise((resolve) => {
    // CI=1: non-interactive, and no crash report to Sentry (offline, that would hang).
    const child = spawn("npx", args, {
      cwd: projectDir,
      env: { ...process.env, CI: "1", NO_COLOR: "1", FORCE_COLOR: "0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let text = "";
    const collect = (stream) => (chunk) => {
      text += chunk;
      if (echo) stream.write(chunk);
    };
    child.stdout.on("data", collect(process.stdout));
    child.stderr.on("data", collect(process.stderr));
    child.on("exit", (exitCode, signal) =>
      resolve({ code: exitCode ?? (signal ? 1 : 0), output: text }),
    );
  });
  await stub.close();
  const remove = () => rmSync(parent, { recursive: true, force: true });
  return { code, output, dir, requests: stub.requests, remove };
}
