import { defineConfig } from "vitest/config";

/** `npm run bench`: the scaling benchmark (bench/), kept out of `npm test`. */
export default defineConfig({
  test: {
    environment: "node",
    server: { deps: { inline: ["convex-test"] } },
    include: ["bench/**/*.bench-test.ts"],
    testTimeout: 15 * 60 * 1000,
    hookTimeout: 60_000,
  },
});
