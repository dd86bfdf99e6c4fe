#!/usr/bin/env node
// `npm run check:deploy` (run by .ci/run): catches what `npm test` cannot see, a push that would
// fail. Offline, in well under a minute:
//   1. bundles convex/ with the Convex CLI's own bundler, for both runtimes (isolate and "use
//      node"), as `convex deploy` would before uploading; any bundler error or warning fails;
//   2. runs tests/authConfig.test.ts on the auth.config.js of that bundle (the backend evaluates
//      it with an env that throws on unset variables);
//   3. runs `npm run codegen` and fails if convex/_generated/ then differs from git.
// The deployment URL is a throwaway stub on 127.0.0.1 (scripts/lib/stubDeployment.mjs).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { debugBundle } from "./lib/debugBundle.mjs";

const projectDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const failures = [];
const fail = (message) => {
  failures.push(message);
  console.error(`check:deploy: ${message}`);
};

/** Top-level convex/ modules that start with the "use node" directive, as module paths. */
function useNodeModules(dir, prefix = "") {
  const found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith("_") || entry.name.startsWith(".")) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...useNodeModules(full, `${prefix}${entry.name}/`));
    else if (/\.[cm]?[jt]sx?$/.test(entry.name) && !entry.name.endsWith(".d.ts")) {
      const head = readFileSync(full, "utf8").replace(/^(\s|\/\/[^\n]*\n|\/\*[\s\S]*?\*\/)*/, "");
      if (/^["']use node["']/.test(head))
        found.push(prefix + entry.name.replace(/\.[^.]+$/, ".js"));
    }
  }
  return found;
}

// 1. The CLI's bundler, both runtimes.
const bundle = await debugBundle();
try {
  const problems = bundle.output.split("\n").filter((line) => /warn|error|✖|failed/i.test(line));
  if (bundle.code !== 0) fail(`the Convex CLI could not bundle convex/ (exit ${bundle.code})`);
  for (const line of problems) fail(`bundler: ${line.trim()}`);
  if (bundle.requests.length > 0) fail(`the CLI contacted the stub: ${bundle.requests.join(", ")}`);
  if (bundle.code !== 0 || problems.length > 0) console.error(bundle.output);

  const configPath = path.join(bundle.dir, "fullConfig.json");
  if (bundle.code === 0 && existsSync(configPath)) {
    const { modules } = JSON.parse(readFileSync(configPath, "utf8"));
    const byRuntime = { isolate: [], node: [] };
    for (const module of modules) (byRuntime[module.environment] ??= []).push(module.path);
    const expectedNode = useNodeModules(path.join(projectDir, "convex"));
    for (const modulePath of expectedNode) {
      if (!byRuntime.node.includes(modulePath))
        fail(`"use node" module ${modulePath} is not in the node bundle`);
    }
    if (!byRuntime.isolate.includes("auth.config.js")) fail("auth.config.js is not in the bundle");
    console.log(
      `check:deploy: bundled ${byRuntime.isolate.length} isolate and ${byRuntime.node.length} node modules ` +
        `(node: ${byRuntime.node.join(", ") || "none"})`,
    );
  }

  // 2. auth.config.ts under the backend's throwing env, on this very bundle.
  if (bundle.code === 0) {
    const vitest = spawnSync("npx", ["vitest", "run", "tests/authConfig.test.ts"], {
      cwd: projectDir,
      stdio: "inherit",
      env: { ...process.env, AUTH_CONFIG_BUNDLE_DIR: bundle.dir },
    });
    if (vitest.status !== 0) fail("tests/authConfig.test.ts failed");
  }
} finally {
  bundle.remove();
}

// 3. The committed generated code is what a push writes.
const codegen = spawnSync("node", [path.join(projectDir, "scripts", "codegen.mjs")], {
  cwd: projectDir,
  encoding: "utf8",
});
if (codegen.status !== 0) {
  console.error(codegen.stdout, codegen.stderr);
  fail("npm run codegen failed");
} else {
  const status = spawnSync("git", ["status", "--porcelain", "--", "convex/_generated"], {
    cwd: projectDir,
    encoding: "utf8",
  });
  if (status.status !== 0) fail(`git status failed: ${status.stderr.trim()}`);
  else if (status.stdout.trim() !== "") {
    fail(
      `npm run codegen changed convex/_generated/ (commit the result):\n${status.stdout.trimEnd()}`,
    );
  }
}

if (failures.length > 0) {
  console.error(
    `check:deploy: FAILED (${failures.length} problem${failures.length === 1 ? "" : "s"})`,
  );
  process.exit(1);
}
console.log("check:deploy: ok (bundles for both runtimes, auth config, generated code)");
