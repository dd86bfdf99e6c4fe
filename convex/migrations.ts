import { v } from "convex/values";
import { getStatus, makeMigration } from "convex-helpers/server/migrations";
import { internal } from "./_generated/api";
import { internalQuery } from "./_generated/server";
import { internalMutation } from "./lib/functions";
import { moveBalanceIntoLots } from "./model/lotsMigration";

/**
 * Data migrations (convex-helpers' migrations: bounded batches that schedule the next one, with
 * their progress in the `migrations` table). Operators run them; docs/credits.md says how.
 */
const migration = makeMigration(internalMutation, { migrationTable: "migrations" });

/**
 * Every user's rows from before credit lots, converted (model/lotsMigration.ts). Idempotent: a
 * converted user changes nothing, so it can be run again from the start (`cursor: null`).
 * A user reads at most a few hundred documents, so 25 users keep a batch far below the limits.
 */
export const moveBalancesIntoLots = migration({
  table: "users",
  batchSize: 25,
  migrateOne: async (ctx, user) => {
    await moveBalanceIntoLots(ctx, user._id);
  },
});

type MigrationState = { name: string; isDone: boolean; processed: number; workerStatus?: string };

/** Where each migration stands: done, or how far it got and whether its next batch is queued. */
export const status = internalQuery({
  args: {},
  returns: v.array(
    v.object({
      name: v.string(),
      isDone: v.boolean(),
      processed: v.number(),
      /** The scheduled batch's state while it runs (`pending`, `inProgress`, `failed`...). */
      workerStatus: v.optional(v.string()),
    }),
  ),
  handler: async (ctx): Promise<MigrationState[]> => {
    const found: Array<Partial<MigrationState> & { name: string; isDone: boolean }> =
      await getStatus(ctx, {
        migrationTable: "migrations",
        migrations: [internal.migrations.moveBalancesIntoLots],
      });
    return found.map((m) => ({
      name: m.name,
      isDone: m.isDone,
      processed: m.processed ?? 0,
      workerStatus: m.workerStatus,
    }));
  },
});
