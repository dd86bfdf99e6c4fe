// A throwaway stand-in for a Convex deployment, on 127.0.0.1 only, for CLI runs that must stay
// offline (scripts/codegen.mjs, scripts/check-deploy.mjs). It never stores or runs anything:
//
// - POST /api/get_config_hashes answers "nothing deployed yet";
// - POST /api/deploy2/start_push answers with the analysis a real backend returns for the push it
//   receives. Like the backend, it evaluates the bundled component definitions of the request (the
//   app's convex/convex.config.ts and every component it uses, as the CLI bundled them) and reports
//   what their `export()` gives: each instance's name and definition path, env, http mounts. So the
//   app's real `app.use(...)` calls, never a list kept here, decide `components.<name>`. Functions
//   and schemas are not analysed (the CLI's codegen reads neither for installed packages, and the
//   root's api uses the dynamic `anyApi`). That is all the CLI's final codegen step reads, so
//   `convex codegen` then writes convex/_generated/ with the CLI's own code, exactly as
//   `convex dev` / `convex deploy` do after a push;
// - every other request gets a 400, so a CLI that tried to really push would fail at once.
//
// It closes itself after `lifetimeMs` even if the caller forgets to.
import http from "node:http";
import zlib from "node:zlib";

const UDF_CONFIG = {
  serverVersion: "0.0.0",
  importPhaseRngSeed: null,
  importPhaseUnixTimestamp: null,
};

// The bundler rewrites `import x from "<pkg>/convex.config.js"` in a definition to this, with the
// component's definition path base64url-encoded (bundleDefinitions in the CLI).
const COMPONENT_IMPORT = /import\s*([\w$]+)\s*from\s*["']\.\/_componentDeps\/([\w-]+)["'];?/g;

let evaluations = 0;

/**
 * Evaluates one bundled definition module (ESM, `convex/server` inlined) and returns what its
 * default export's `export()` gives. `imported(path)` is what an import of the component at
 * `path` evaluates to: the `{ componentDefinitionPath, defaultName }` the backend supplies.
 */
async function evaluateDefinition(source, imported) {
  const key = `__cineweaveStubDeps${evaluations++}`;
  const deps = {};
  const rewritten = source.replace(COMPONENT_IMPORT, (_match, local, encoded) => {
    deps[encoded] = imported(Buffer.from(encoded, "base64url").toString("utf8"));
    return `const ${local}=globalThis.${key}[${JSON.stringify(encoded)}];`;
  });
  if (rewritten.includes("_componentDeps/")) {
    throw new Error("a component import in a bundled definition has an unexpected form");
  }
  globalThis[key] = deps;
  try {
    const url = `data:text/javascript;base64,${Buffer.from(rewritten).toString("base64")}`;
    const module = await import(url);
    return module.default.export();
  } finally {
    delete globalThis[key];
  }
}

/** The `analysis` of start_push: one evaluated definition per definition path ("" is the app). */
async function analyse(request) {
  const specs = new Map(request.componentDefinitions.map((spec) => [spec.definitionPath, spec]));
  const exported = new Map();
  const evaluate = async (definitionPath, spec, stack) => {
    if (exported.has(definitionPath)) return exported.get(definitionPath);
    if (stack.includes(definitionPath)) throw new Error(`component cycle at ${definitionPath}`);
    const names = new Map();
    for (const dependency of spec.dependencies ?? []) {
      const child = specs.get(dependency);
      if (!child) throw new Error(`no definition was pushed for component ${dependency}`);
      names.set(dependency, (await evaluate(dependency, child, [...stack, definitionPath])).name);
    }
    const result = await evaluateDefinition(spec.definition.source, (path) => {
      if (!names.has(path))
        throw new Error(`${definitionPath || "the app"} imports undeclared ${path}`);
      return { componentDefinitionPath: path, defaultName: names.get(path) };
    });
    exported.set(definitionPath, result);
    return result;
  };
  await evaluate("", request.appDefinition, []);
  for (const [definitionPath, spec] of specs) await evaluate(definitionPath, spec, []);

  const analysis = {};
  for (const [definitionPath, { name: _name, ...definition }] of exported) {
    analysis[definitionPath] = {
      definition: { path: definitionPath, ...definition, envVars: definition.envVars ?? null },
      schema: null,
      functions: {},
      udfConfig: UDF_CONFIG,
    };
  }
  return analysis;
}

async function startPushResponse(request) {
  return {
    environmentVariables: {},
    externalDepsId: null,
    componentDefinitionPackages: {},
    appAuth: [],
    analysis: await analyse(request),
    app: {
      definitionPath: "",
      componentPath: "",
      args: {},
      childComponents: {},
      httpRoutes: { httpModuleRoutes: null, mounts: [] },
      exports: {},
    },
    schemaChange: { allocatedComponentIds: {}, schemaIds: {} },
  };
}

function decode(req, body) {
  if (req.headers["content-encoding"] === "br") return zlib.brotliDecompressSync(body);
  if (req.headers["content-encoding"] === "gzip") return zlib.gunzipSync(body);
  return body;
}

/**
 * Starts the stub; resolves to `{ url, requests, close }`. `requests` lists "METHOD /path".
 * With `refuseAll`, every request gets the 400 (for runs that must not talk to a deployment).
 */
export async function startStubDeployment({ lifetimeMs = 120_000, refuseAll = false } = {}) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", async () => {
      const path = (req.url ?? "").split("?")[0];
      requests.push(`${req.method} ${path}`);
      const reply = (status, body) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      let body;
      try {
        body = decode(req, Buffer.concat(chunks));
      } catch {
        return reply(400, { code: "BadRequest", message: "undecodable body" });
      }
      if (!refuseAll && req.method === "POST" && path === "/api/get_config_hashes") {
        return reply(200, {
          config: { functions: "convex/" },
          moduleHashes: [],
          nodeDependencies: [],
        });
      }
      if (!refuseAll && req.method === "POST" && path === "/api/deploy2/start_push") {
        try {
          return reply(200, await startPushResponse(JSON.parse(body.toString("utf8"))));
        } catch (error) {
          return reply(400, { code: "StubDeployment", message: `analysis failed: ${error}` });
        }
      }
      reply(400, {
        code: "StubDeployment",
        message: `The offline stub deployment does not serve ${req.method} ${path}.`,
      });
    });
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const timer = setTimeout(() => server.close(), lifetimeMs);
  timer.unref();
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        clearTimeout(timer);
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
