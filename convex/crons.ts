import { cronJobs } from "convex/server";
import { internal } from "./_generated/api";

const crons = cronJobs();

// Not at minute 0, when everyone else's hourly jobs run.
crons.hourly("expire old jobs", { minuteUTC: 17 }, internal.jobs.expireOldJobs, {});
crons.daily(
  "prune old metrics buckets",
  { hourUTC: 3, minuteUTC: 41 },
  internal.metrics.pruneOldBuckets,
  {},
);

export default crons;
