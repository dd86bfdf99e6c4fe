import { cronJobs } from "convex/server";
import { internal } from "./_generated/api";

const crons = cronJobs();

// Not at minute 0, when everyone else's hourly jobs run.
crons.hourly("expire old jobs", { minuteUTC: 17 }, internal.jobs.expireOldJobs, {});

export default crons;
