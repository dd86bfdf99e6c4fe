import { defineConfig } from "vitest/config";

/** `npm run bench`: the scaling benchmark (bench/), kept out of `npm test`. */
export default defineConfig({
  plugins: [
    {
      // Exports convex-test's in-memory database class and the helpers it queries with, so
      // bench/fastIndexes.ts can give it real indexes (a speed-up only; see there). Applied when
      // vitest loads convex-test (inlined), so nothing in node_modules changes.
      name: "bench-export-convex-test-database",
      enforce: "pre",
      transform(code, id) {
        if (!/[\\/]convex-test[\\/]dist[\\/]index\.js$/.test(id)) {
          return null;
        }
        if (!code.includes("class DatabaseFake {")) {
          throw new Error(
            "convex-test changed: DatabaseFake not found (update bench/fastIndexes.ts)",
          );
        }
        const exported = [
          "DatabaseFake as __benchDatabaseFake",
          "evaluateFieldPath as __benchEvaluateFieldPath",
          "evaluateQueryValue as __benchEvaluateQueryValue",
          "evaluateRangeFilter as __benchEvaluateRangeFilter",
          "validateIndexRangeExpression as __benchValidateIndexRangeExpression",
          "compareValues as __benchCompareValues",
        ];
        return { code: `${code}\nexport { ${exported.join(", ")} };\n`, map: null };
      },
    },
  ],
  test: {
    environment: "node",
    // The components' `/test` exports are TypeScript that uses import.meta.glob: vite transforms them.
    server: { deps: { inline: ["convex-test", /@convex-dev\/[\w-]+\/src\/test\.ts/] } },
    include: ["bench/**/*.bench-test.ts"],
    testTimeout: 15 * 60 * 1000,
    hookTimeout: 60_000,
  },
});
