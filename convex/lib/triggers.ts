import { Triggers } from "convex-helpers/server/triggers";
import type { GenericDatabaseWriter } from "convex/server";
import type { DataModel } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { cachingWriter } from "./documentCache";
import {
  onJobChange,
  onLotChange,
  onPaymentChange,
  onSubscriptionChange,
  onSubscriptionOutcome,
  onUserChange,
} from "../model/metricsRollups";
import { lotHooks } from "../model/lots";
import { onMandateNotice, onPaymentNotice, onSubscriptionNotice } from "../model/noticeTriggers";
import { onVoidMark } from "../model/refundCredits";
import { rolloverOnExpiry } from "../model/subscriptionPeriods";

/**
 * Database triggers (convex-helpers): code that runs inside the mutation that writes a table,
 * keeping denormalised data in step. Every mutation of this app is built with `mutation` or
 * `internalMutation` from lib/functions.ts, which wrap `ctx.db` with these (lint forbids the
 * unwrapped builders), so no write path can skip them. Today: the metrics rollups, and the
 * email notices that subscription, payment and mandate changes mean (model/noticeTriggers.ts).
 *
 * `withTriggers` is that wrapping. Writes to a table without a trigger go straight to the
 * database (convex-helpers' wrapper would read such a patched document before and after too),
 * and every read by id goes through a per-transaction document cache (lib/documentCache.ts), so
 * the wrapper's reads of a document the code already read, and repeated lookups of the same
 * user, plan or lot in one mutation, read nothing more.
 *
 * The credit core's hooks (model/lots.ts) are registered here too, so every mutation (they all
 * load this file) has them: a period lot's rollover before it expires, and refunds following
 * the held credits they marked.
 */
export const triggers = new Triggers<DataModel>();

triggers.register("jobs", onJobChange);
triggers.register("payments", onPaymentChange);
triggers.register("users", onUserChange);
triggers.register("subscriptions", onSubscriptionChange);
triggers.register("subscriptions", onSubscriptionOutcome);
triggers.register("creditLots", onLotChange);
// Email notices (model/noticeTriggers.ts): they read nothing unless a notice is due.
triggers.register("subscriptions", onSubscriptionNotice);
triggers.register("payments", onPaymentNotice);
triggers.register("mandates", onMandateNotice);

type Writer = GenericDatabaseWriter<DataModel>;
// Forwards each call with its own arguments, whichever overload the caller used.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyFn = (...args: any[]) => Promise<any>;

export function withTriggers(ctx: MutationCtx): { db: Writer } {
  const cached = cachingWriter(ctx.db);
  const triggered = triggers.wrapDB({ ...ctx, db: cached }).db;
  const hasTrigger = (table: unknown) =>
    typeof table === "string" && triggers.registered[table as keyof DataModel] !== undefined;
  /** Table-name forms go to the trigger wrapper only for tables with triggers; it resolves the rest. */
  const route = (method: "insert" | "patch" | "replace" | "delete", arity: number): AnyFn => {
    const direct = (cached[method] as AnyFn).bind(cached);
    const wrapped = (triggered[method] as AnyFn).bind(triggered);
    return async (...args: unknown[]) =>
      (args.length === arity && !hasTrigger(args[0])) ||
      (method === "insert" && !hasTrigger(args[0]))
        ? await direct(...args)
        : await wrapped(...args);
  };
  return {
    db: {
      ...cached,
      insert: route("insert", 2),
      patch: route("patch", 3),
      replace: route("replace", 3),
      delete: route("delete", 2),
    } as Writer,
  };
}

lotHooks.onExpiring(rolloverOnExpiry);
lotHooks.onVoidMark(onVoidMark);
