import { vOnCompleteArgs } from "@convex-dev/workpool";
import { v } from "convex/values";
import { internal } from "./_generated/api";
import { internalAction, internalQuery } from "./_generated/server";
import { sweepMutation } from "./lib/sweeps";
import { internalMutation } from "./lib/functions";
import { deleteObject, r2Setting } from "./lib/r2";
import * as Images from "./model/images";
import * as VideoDeletions from "./model/videoDeletions";

/**
 * Deleting media. Objects of the video bucket (model/videoDeletions.ts): the expiry cron and the
 * end of every attempt record `videoDeletions` rows and enqueue `deleteVideoObjects` for their
 * batch on the R2 deletion workpool (lib/workpools.ts); `sweepVideoDeletions` retries whatever
 * did not succeed, and deletes once more the keys an upload URL could still write. Only keys
 * recorded there are ever deleted. Input images in Convex storage: `deleteOrphanImages` deletes uploads that no
 * unfinished job uses once they are older than the retention window.
 */

const deletionIds = v.array(v.id("videoDeletions"));

/** The keys of these deletions that still wait (rows already done are left out). */
export const deletionsToRun = internalQuery({
  args: { deletionIds },
  returns: v.array(v.object({ id: v.id("videoDeletions"), key: v.string() })),
  handler: async (ctx, args) => {
    const rows = await Promise.all(args.deletionIds.map((id) => ctx.db.get("videoDeletions", id)));
    return rows.flatMap((row) => (row === null ? [] : [{ id: row._id, key: row.key }]));
  },
});

/** DELETEs each object (a few at a time) and records what succeeded and what failed. */
export const deleteVideoObjects = internalAction({
  args: { deletionIds },
  returns: v.object({ deleted: v.number(), failed: v.number() }),
  handler: async (ctx, args) => {
    const rows = await ctx.runQuery(internal.media.deletionsToRun, args);
    const setting = r2Setting();
    const deleted: typeof args.deletionIds = [];
    const failed: Array<{ id: (typeof args.deletionIds)[number]; error: string }> = [];
    const queue = [...rows];
    const worker = async () => {
      for (let row = queue.shift(); row !== undefined; row = queue.shift()) {
        try {
          if (setting.kind !== "on") {
            throw new Error(`the video bucket is not configured (R2 is ${setting.kind})`);
          }
          await deleteObject(setting.config, row.key);
          deleted.push(row.id);
        } catch (error) {
          failed.push({
            id: row.id,
            error: error instanceof Error ? error.message : String(error),
          });
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    if (failed.length > 0) {
      console.warn(`Deleting ${failed.length} video objects failed; retrying later.`, failed[0]);
    }
    await ctx.runMutation(internal.media.recordDeletions, { deleted, failed });
    return { deleted: deleted.length, failed: failed.length };
  },
});

/** What a deletion action did: done rows go, failed ones wait for their next attempt. */
export const recordDeletions = internalMutation({
  args: {
    deleted: deletionIds,
    failed: v.array(v.object({ id: v.id("videoDeletions"), error: v.string() })),
  },
  returns: v.null(),
  handler: async (ctx, outcome) => {
    await VideoDeletions.recordDeletions(ctx, outcome, Date.now());
    return null;
  },
});

/**
 * The workpool's word on a `deleteVideoObjects` run that did not succeed (it crashed through its
 * retries, or was canceled): its rows count as failed and back off; the sweep retries them.
 */
export const deletionsFinished = internalMutation({
  args: vOnCompleteArgs(v.object({ deletionIds })),
  returns: v.null(),
  handler: async (ctx, { context, result }) => {
    if (result.kind === "success") return null;
    const error = result.kind === "failed" ? result.error : "the deletion run was canceled";
    await VideoDeletions.recordDeletions(
      ctx,
      { deleted: [], failed: context.deletionIds.map((id) => ({ id, error })) },
      Date.now(),
    );
    return null;
  },
});

/**
 * Cron (every 10 minutes): retries deletions that failed or never reported, one bounded batch
 * (one action) per transaction; it schedules itself again while a backlog remains.
 */
export const sweepVideoDeletions = sweepMutation({
  name: "media:sweepVideoDeletions",
  returns: v.object({ scheduled: v.number(), more: v.boolean() }),
  batch: (ctx, now) => VideoDeletions.sweepDeletions(ctx, now),
});

/**
 * Cron (hourly): deletes input-image uploads older than `ORPHAN_IMAGE_RETENTION_MS` (24 h) that
 * no queued or running job uses, from Convex storage with their `imageUploads` record. One
 * bounded batch (`ORPHAN_IMAGE_BATCH_SIZE` files, oldest first) per transaction; while a batch
 * was full it schedules itself again with the same `createdBefore` and the batch's last creation
 * time as `after`. Without arguments it starts from the oldest file, cut off at now minus the
 * window; a `createdBefore` later than that is cut off too.
 */
export const deleteOrphanImages = internalMutation({
  args: { createdBefore: v.optional(v.number()), after: v.optional(v.number()) },
  returns: v.object({ deleted: v.number(), kept: v.number(), more: v.boolean() }),
  handler: async (ctx, args) => {
    const batch = await Images.deleteOrphanImages(ctx, Date.now(), args);
    if (batch.more && batch.after !== null) {
      await ctx.scheduler.runAfter(0, internal.media.deleteOrphanImages, {
        createdBefore: batch.createdBefore,
        after: batch.after,
      });
    }
    return { deleted: batch.deleted, kept: batch.kept, more: batch.more };
  },
});
