import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "edge-runtime",
    // The components' `/test` exports are TypeScript that uses import.meta.glob: vite transforms them.
    server: { deps: { inline: ["convex-test", /@convex-dev\/[\w-]+\/src\/test\.ts/] } },
    include: ["tests/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
  },
});
