import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "edge-runtime",
    // The components' `/test` exports are TypeScript that uses import.meta.glob: vite transforms them.
    server: { deps: { inline: ["convex-test", /@convex-dev\/[\w-]+\/src\/test\.ts/] } },
    include: ["tests/**/*.test.ts"],
    // Set on every deployment (the HTTP actions origin): image upload URLs are made from it.
    env: { CONVEX_SITE_URL: "https://cineweave-test.convex.site" },
    // Console output of a passing test is captured, not printed; month-long scheduled functions
    // stay pending instead of firing at once (see each file).
    setupFiles: ["tests/support/consoleSink.ts", "tests/support/longTimers.ts"],
    // Both cores: vitest's default (cores − 1) ran the files one at a time on this 2-core
    // machine. Forks rather than threads: convex-test and the edge-runtime environment keep
    // process-wide state (globals, env stubs) that a worker thread would share with its process.
    pool: "forks",
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 120_000,
    hookTimeout: 60_000,
  },
});
