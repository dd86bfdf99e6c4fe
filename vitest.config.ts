import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "edge-runtime",
    server: { deps: { inline: ["convex-test"] } },
    include: ["tests/**/*.test.ts"],
    // Console output of a passing test is captured, not printed; month-long scheduled functions
    // stay pending instead of firing at once (see each file).
    setupFiles: ["tests/support/consoleSink.ts", "tests/support/longTimers.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
  },
});
