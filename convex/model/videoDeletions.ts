import type { Doc, Id } from "../_generated/dataModel";
import { internal } from "../_generated/api";
import type { MutationCtx } from "../_generated/server";
import { r2DeletionPool } from "../lib/workpools";

/**
 * Deleting objects of the video bucket. Objects that must go (an expired video, the upload of an
 * attempt that ended, a failed attempt's copy) get a `videoDeletions` row; an action on the R2
 * deletion workpool DELETEs a batch of them and a bounded sweep retries what failed. Only keys
 * recorded here are ever deleted: the bucket is never listed.
 *
 * An upload URL outlives its attempt: a presigned PUT from the claim or the last heartbeat stays
 * valid until the lease it was signed for ends, so an upload can land after its attempt failed,
 * was retried or was done, and after the first deletion of its key. Such a row carries
 * `writableUntil` (the URL's expiry plus `UPLOAD_LANDING_MARGIN_MS`): a deletion that succeeds
 * before then is run once more from that time, so nothing uploaded late stays in the bucket.
 */

export type DeletionReason = Doc<"videoDeletions">["reason"];

/**
 * How long after its upload URL expired an object may still be written: clock skew between the
 * bucket and Convex, and an upload that started (was authorised) just before the expiry and is
 * still streaming a large video. A key that was writable gets its last deletion after this.
 */
export const UPLOAD_LANDING_MARGIN_MS = 60 * 60 * 1000;

/** How long a scheduled deletion may take before the sweep retries it. */
export const DELETION_FIRST_RETRY_MS = 10 * 60 * 1000;
const DELETION_MAX_BACKOFF_MS = 6 * 60 * 60 * 1000;
/** Deletions per action (one action per expiry batch) and per sweep transaction. */
export const DELETION_BATCH_SIZE = 200;

/** When a deletion that failed `attempts` times is tried again: 10 min, 20, 40, … up to 6 h. */
export function nextDeletionAttempt(now: number, attempts: number): number {
  const backoff = DELETION_FIRST_RETRY_MS * 2 ** Math.max(0, Math.min(attempts - 1, 10));
  return now + Math.min(backoff, DELETION_MAX_BACKOFF_MS);
}

/**
 * Records that `key` (an object of `job`) must be deleted. The caller schedules the deletion
 * (`scheduleDeletions`), one action for a whole batch; if that action never succeeds, the
 * sweep tries again from `nextAttemptAt`. `uploadUrlExpiresAt`: when the last upload URL that
 * can write `key` expires (absent: none can); the deletion is then repeated after it.
 */
export async function requestDeletion(
  ctx: MutationCtx,
  job: Doc<"jobs">,
  key: string,
  reason: DeletionReason,
  now: number,
  uploadUrlExpiresAt?: number,
): Promise<Id<"videoDeletions">> {
  return await ctx.db.insert("videoDeletions", {
    jobId: job._id,
    key,
    reason,
    // The caller schedules the first run now (`scheduleDeletions`): attempt 1.
    attempts: 1,
    nextAttemptAt: nextDeletionAttempt(now, 1),
    createdAt: now,
    ...(uploadUrlExpiresAt === undefined
      ? {}
      : { writableUntil: uploadUrlExpiresAt + UPLOAD_LANDING_MARGIN_MS }),
  });
}

/**
 * One run of `media.deleteVideoObjects` for these deletions (at most `DELETION_BATCH_SIZE`),
 * through the R2 deletion workpool: bounded parallelism, a crashed run retried with backoff, and
 * `media.deletionsFinished` told if it never succeeded.
 */
export async function scheduleDeletions(
  ctx: MutationCtx,
  deletionIds: Array<Id<"videoDeletions">>,
): Promise<void> {
  if (deletionIds.length > 0) {
    await r2DeletionPool.enqueueAction(
      ctx,
      internal.media.deleteVideoObjects,
      { deletionIds },
      {
        onComplete: internal.media.deletionsFinished,
        onCompleteExcludeKinds: ["success"],
        context: { deletionIds },
      },
    );
  }
}

/**
 * The outcome of one deletion action: deleted rows go (and their job records `videoDeletedAt`
 * when the object was its own video), unless an upload URL could still write the key: then the
 * row waits until `writableUntil` and the sweep deletes the key once more. Failed ones wait for
 * their next attempt.
 */
export async function recordDeletions(
  ctx: MutationCtx,
  outcome: {
    deleted: Array<Id<"videoDeletions">>;
    failed: Array<{ id: Id<"videoDeletions">; error: string }>;
  },
  now: number,
): Promise<void> {
  for (const id of outcome.deleted) {
    const row = await ctx.db.get("videoDeletions", id);
    if (row === null) continue;
    if (row.writableUntil !== undefined && now < row.writableUntil) {
      // Deleted for now; a late upload could still land. Counted afresh from the next run.
      await ctx.db.patch("videoDeletions", id, {
        attempts: 0,
        nextAttemptAt: row.writableUntil,
        lastError: undefined,
      });
    } else {
      await ctx.db.delete("videoDeletions", id);
    }
    const job = await ctx.db.get("jobs", row.jobId);
    if (job !== null && job.videoKey === row.key && job.videoDeletedAt === undefined) {
      await ctx.db.patch("jobs", job._id, { videoDeletedAt: now });
    }
  }
  for (const { id, error } of outcome.failed) {
    const row = await ctx.db.get("videoDeletions", id);
    if (row === null) continue;
    // The attempt was counted when it was scheduled; the next waits its backoff from now.
    await ctx.db.patch("videoDeletions", id, {
      nextAttemptAt: nextDeletionAttempt(now, row.attempts),
      lastError: error.slice(0, 500),
    });
  }
}

/**
 * One bounded batch of deletions whose time has come (failed before, or whose action never
 * reported): each is pushed back as if it failed once more (so a slow action is not doubled by
 * the next sweep) and one action is scheduled for the batch. Says whether more may remain.
 */
export async function sweepDeletions(
  ctx: MutationCtx,
  now: number,
): Promise<{ scheduled: number; more: boolean }> {
  const due = await ctx.db
    .query("videoDeletions")
    .withIndex("by_nextAttemptAt", (q) => q.lte("nextAttemptAt", now))
    .take(DELETION_BATCH_SIZE);
  for (const row of due) {
    // Counted as a failed attempt now: an action that never reports still backs off (10 min,
    // 20, 40, ... 6 h) instead of being retried every sweep for ever.
    const attempts = row.attempts + 1;
    await ctx.db.patch("videoDeletions", row._id, {
      attempts,
      nextAttemptAt: nextDeletionAttempt(now, attempts),
    });
  }
  await scheduleDeletions(
    ctx,
    due.map((row) => row._id),
  );
  return { scheduled: due.length, more: due.length === DELETION_BATCH_SIZE };
}
