import tseslint from "typescript-eslint";
import convexPlugin from "@convex-dev/eslint-plugin";

export default tseslint.config(
  { ignores: ["node_modules/", "convex/_generated/", "coverage/", "bench/out/"] },
  ...tseslint.configs.recommended,
  ...convexPlugin.configs.recommended,
  {
    files: ["convex/**/*.ts"],
    rules: {
      "@convex-dev/no-filter-in-query": "error",
      "@convex-dev/no-collect-in-query": "error",
      // The rule wants env vars declared in convex/convex.config.ts and read from the typed `env`
      // of _generated/server. This app has no convex.config.ts, and for such an app a push
      // regenerates that `env` typed with CONVEX_CLOUD_URL and CONVEX_SITE_URL only, so every other
      // variable is read from process.env (the same object at runtime).
      "@convex-dev/no-process-env": "off",
      // Mutations come from lib/functions.ts, which runs the database triggers on every write.
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["**/_generated/server"],
              importNames: ["mutation", "internalMutation"],
              message: "Use mutation/internalMutation from convex/lib/functions.ts (triggers).",
            },
          ],
        },
      ],
    },
  },
  {
    files: ["convex/lib/functions.ts"],
    rules: { "no-restricted-imports": "off" },
  },
  {
    rules: {
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_" },
      ],
    },
  },
);
