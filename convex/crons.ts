import { cronJobs } from "convex/server";
import { internal } from "./_generated/api";

const crons = cronJobs();

// Not at minute 0, when everyone else's hourly jobs run.
crons.hourly("expire old jobs", { minuteUTC: 17 }, internal.jobs.expireOldJobs, {});
// Folds each hour that is over into its day's metrics row, a few minutes after it ends.
crons.hourly("fold metrics hours", { minuteUTC: 4 }, internal.metrics.foldHours, {});
// Adds the subscription changes of the last minute to the subscription gauges (metrics.overview).
crons.interval(
  "fold subscription totals",
  { minutes: 1 },
  internal.metrics.foldSubscriptionTotals,
  {},
);
// Adds the counted changes of the last minute (jobs, payments, users...) to the hourly buckets.
crons.interval("fold metrics deltas", { minutes: 1 }, internal.metrics.foldBucketDeltas, {});
crons.daily(
  "prune old metrics buckets",
  { hourUTC: 3, minuteUTC: 41 },
  internal.metrics.pruneOldBuckets,
  {},
);
crons.daily(
  "prune old webhook event ids",
  { hourUTC: 3, minuteUTC: 53 },
  internal.webhooks.pruneOldEvents,
  {},
);

// GPU worker leases: requeue or fail jobs whose worker stopped reporting, and fail jobs that
// waited in the queue too long. Both run in bounded batches and reschedule while work remains.
crons.interval(
  "sweep expired worker leases",
  { minutes: 1 },
  internal.worker.sweepExpiredLeases,
  {},
);
// Subscription period ends and grace ends run on time through the scheduler; this catches misses.
crons.interval("sweep due subscriptions", { minutes: 10 }, internal.subscriptions.sweepDue, {});
// Credit lots expire on time through the scheduler; this catches any expiry that was missed.
crons.interval("expire due credit lots", { minutes: 10 }, internal.credits.expireDueLots, {});
// Video objects whose deletion failed (or never reported) are deleted again, in bounded batches.
crons.interval("retry video deletions", { minutes: 10 }, internal.media.sweepVideoDeletions, {});
crons.interval("sweep queue timeouts", { minutes: 1 }, internal.worker.sweepQueueTimeouts, {});
// Input-image uploads no unfinished job uses are deleted once older than 24 h, in bounded batches.
crons.hourly(
  "delete orphan image uploads",
  { minuteUTC: 47 },
  internal.media.deleteOrphanImages,
  {},
);
// Emails users whose credits expire within 3 days (docs/notices.md), in bounded batches.
crons.daily(
  "notify expiring credits",
  { hourUTC: 9, minuteUTC: 23 },
  internal.notices.sweepExpiringCreditNotices,
  {},
);
// The Resend component's finished and abandoned emails (the notices keep the record).
crons.hourly("clean up sent emails", { minuteUTC: 29 }, internal.notices.cleanupResendEmails, {});

export default crons;
