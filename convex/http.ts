import { httpRouter } from "convex/server";
import * as worker from "./workerHttp";

/** HTTP routes. Handlers live in their own modules; see README "GPU worker API". */
const http = httpRouter();

// GPU worker API: JSON over POST, `Authorization: Bearer <WORKER_SECRET>`.
http.route({ path: "/worker/claim", method: "POST", handler: worker.claim });
http.route({ path: "/worker/jobs/heartbeat", method: "POST", handler: worker.heartbeat });
http.route({ path: "/worker/jobs/complete", method: "POST", handler: worker.complete });
http.route({ path: "/worker/jobs/fail", method: "POST", handler: worker.fail });

export default http;
