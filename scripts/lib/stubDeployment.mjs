// A throwaway stand-in for a Convex deployment, on 127.0.0.1 only, for CLI runs that must stay
// offline (scripts/codegen.mjs, scripts/check-deploy.mjs). It never stores or runs anything:
//
// - POST /api/get_config_hashes answers "nothing deployed yet";
// - POST /api/deploy2/start_push answers with the analysis a real backend returns for this app's
//   root (no convex.config.ts: no child components, no declared env vars). That is all the CLI's
//   final codegen step reads, so `convex codegen` then writes convex/_generated/ with the CLI's own
//   code, exactly as `convex dev` / `convex deploy` do after a push;
// - every other request gets a 400, so a CLI that tried to really push would fail at once.
//
// It closes itself after `lifetimeMs` even if the caller forgets to.
import http from "node:http";
import zlib from "node:zlib";

const ROOT_ANALYSIS = {
  definition: {
    path: "",
    definitionType: { type: "app" },
    childComponents: [],
    httpMounts: {},
    exports: { type: "branch", branch: [] },
    envVars: null,
  },
  schema: null,
  functions: {},
  udfConfig: { serverVersion: "0.0.0", importPhaseRngSeed: null, importPhaseUnixTimestamp: null },
};

function startPushResponse() {
  return {
    environmentVariables: {},
    externalDepsId: null,
    componentDefinitionPackages: {},
    appAuth: [],
    analysis: { "": ROOT_ANALYSIS },
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
    req.on("end", () => {
      const path = (req.url ?? "").split("?")[0];
      requests.push(`${req.method} ${path}`);
      const reply = (status, body) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      try {
        decode(req, Buffer.concat(chunks));
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
        return reply(200, startPushResponse());
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
