import rateLimiter from "@convex-dev/rate-limiter/convex.config.js";
import resend from "@convex-dev/resend/convex.config.js";
import workpool from "@convex-dev/workpool/convex.config.js";
import { defineApp } from "convex/server";

const app = defineApp();
app.use(rateLimiter);
app.use(resend);
app.use(workpool, { name: "r2Deletions" });
app.use(workpool, { name: "renewalCreations" });
export default app;
