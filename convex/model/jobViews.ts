import { v, type Infer } from "convex/values";
import { doc } from "convex-helpers/validators";
import schema from "../schema";
import type { Doc } from "../_generated/dataModel";
import type { QueryCtx } from "../_generated/server";
import { videoUrl } from "./videos";

/** Queue positions are counted through the index up to this many jobs ahead. */
export const QUEUE_POSITION_CAP = 100;

/** What the job's owner sees: the job without the worker's lease, plus its queue position. */
export const jobViewValidator = doc(schema, "jobs")
  .omit("workerId", "leaseExpiresAt", "videoKey")
  .extend({
    /** While queued: jobs ahead + 1; `atLeast` when more than the counting cap are ahead. */
    queuePosition: v.optional(v.object({ position: v.number(), atLeast: v.boolean() })),
  });
export type JobView = Infer<typeof jobViewValidator>;

export function jobView(job: Doc<"jobs">): JobView {
  const { workerId: _workerId, leaseExpiresAt: _leaseExpiresAt, videoKey: _key, ...view } = job;
  return view;
}

/**
 * `jobView` with the video's URL for its owner: a bucket video's presigned GET (valid until
 * `expiresAt`, computed from the job alone, so the query stays cached), else the stored URL.
 */
export async function ownerJobView(job: Doc<"jobs">): Promise<JobView> {
  const { r2Url: _stored, ...view } = jobView(job);
  const r2Url = await videoUrl(job);
  return r2Url === undefined ? view : { ...view, r2Url };
}

/**
 * Counts the queued jobs ahead of this one (the order workers claim in: `by_status`, i.e.
 * createdAt, then creation time) through the index, reading at most the cap.
 *
 * It reads the jobs *immediately* ahead (descending from this job's own index key), not the
 * head of the queue: a live `getJob` subscription then depends only on the index range between
 * this job and the cap-th job ahead of it. A claim (which takes the head) changes that range
 * only for the jobs at most the cap behind the head, so it re-runs at most cap + 1 `getJob`
 * subscriptions however long the queue is (reading from the head, every queued job's
 * subscription held the head and re-ran on every claim).
 */
export async function queuePosition(
  ctx: QueryCtx,
  job: Doc<"jobs">,
): Promise<{ position: number; atLeast: boolean }> {
  // Jobs created in the same millisecond are ordered by creation time, the index's last key.
  const sameMillisecond = await ctx.db
    .query("jobs")
    .withIndex("by_status", (q) =>
      q
        .eq("status", "queued")
        .eq("createdAt", job.createdAt)
        .lt("_creationTime", job._creationTime),
    )
    .order("desc")
    .take(QUEUE_POSITION_CAP);
  let ahead = sameMillisecond.length;
  if (ahead < QUEUE_POSITION_CAP) {
    const earlier = await ctx.db
      .query("jobs")
      .withIndex("by_status", (q) => q.eq("status", "queued").lt("createdAt", job.createdAt))
      .order("desc")
      .take(QUEUE_POSITION_CAP - ahead);
    ahead += earlier.length;
  }
  return { position: ahead + 1, atLeast: ahead === QUEUE_POSITION_CAP };
}
