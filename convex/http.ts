import { httpRouter } from "convex/server";
import { clerkWebhook, trueLayerWebhook } from "./webhooks";

/**
 * HTTP routes, served at https://<deployment>.convex.site. A thin router: handlers live in
 * their own modules (webhooks.ts). Add new routes as one `http.route` each.
 */
const http = httpRouter();

http.route({ path: "/truelayer/webhook", method: "POST", handler: trueLayerWebhook });
http.route({ path: "/clerk/webhook", method: "POST", handler: clerkWebhook });

export default http;
