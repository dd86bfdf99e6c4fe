import { corsRouter } from "convex-helpers/server/cors";
import { httpRouter } from "convex/server";
import * as imageUploads from "./imageUploads";
import { clerkWebhook, resendWebhook, trueLayerWebhook } from "./webhooks";
import * as worker from "./workerHttp";

/**
 * HTTP routes, served at https://<deployment>.convex.site. A thin router: handlers live in their
 * own modules. See docs/worker-protocol.md and docs/payments.md.
 */
const http = httpRouter();

// GPU worker API: JSON over POST, `Authorization: Bearer <WORKER_SECRET>`.
http.route({ path: "/worker/claim", method: "POST", handler: worker.claim });
http.route({ path: "/worker/jobs/heartbeat", method: "POST", handler: worker.heartbeat });
http.route({ path: "/worker/jobs/complete", method: "POST", handler: worker.complete });
http.route({ path: "/worker/jobs/fail", method: "POST", handler: worker.fail });

// Signed webhooks.
http.route({ path: "/truelayer/webhook", method: "POST", handler: trueLayerWebhook });
http.route({ path: "/clerk/webhook", method: "POST", handler: clerkWebhook });
// Email delivery events (docs/notices.md).
http.route({ path: "/resend/webhook", method: "POST", handler: resendWebhook });

// Input-image uploads from browsers (any origin: the URL's single-use token is the credential,
// no cookies are involved); the CORS router also answers their preflight OPTIONS.
corsRouter(http, { allowedOrigins: ["*"], allowedHeaders: ["Content-Type"] }).route({
  path: "/images/upload",
  method: "POST",
  handler: imageUploads.upload,
});

export default http;
