import type { TestConvexForDataModel } from "convex-test";
import type { TransactionMetrics } from "convex/server";
import type { DataModel } from "../convex/_generated/dataModel";

/** A convex-test client, signed in or not. */
export type Client = TestConvexForDataModel<DataModel>;
type RunCtx = Parameters<Parameters<Client["run"]>[0]>[0];

export const METRIC_KEYS = [
  "documentsRead",
  "bytesRead",
  "documentsWritten",
  "bytesWritten",
  "databaseQueries",
  "functionsScheduled",
  "scheduledFunctionArgsBytes",
] as const;
export type MetricKey = (typeof METRIC_KEYS)[number];
export type Cost = Record<MetricKey, number>;

/** Convex's per-transaction limits, as `getTransactionMetrics()` reports them (used + remaining). */
export type Limits = Cost;

function usage(metrics: TransactionMetrics): { used: Cost; limits: Limits } {
  const used = {} as Cost;
  const limits = {} as Limits;
  for (const key of METRIC_KEYS) {
    used[key] = metrics[key].used;
    limits[key] = metrics[key].used + metrics[key].remaining;
  }
  return { used, limits };
}

/**
 * Runs `call` as the only work of one transaction (a `t.run` wrapper that calls the real,
 * registered function through `ctx.runQuery` / `ctx.runMutation`, so argument and return
 * validation, auth and the handler all run as deployed) and returns what that call used,
 * read from `ctx.meta.getTransactionMetrics()` before and after. Nested calls inherit the
 * transaction's limits, so a call over a Convex limit throws here too.
 */
export async function measure<T>(
  client: Client,
  call: (ctx: RunCtx) => Promise<T>,
): Promise<{ cost: Cost; limits: Limits; result: T }> {
  return await client.run(async (ctx) => {
    const before = usage(await ctx.meta.getTransactionMetrics());
    const result = await call(ctx);
    const after = usage(await ctx.meta.getTransactionMetrics());
    const cost = {} as Cost;
    for (const key of METRIC_KEYS) {
      cost[key] = after.used[key] - before.used[key];
    }
    return { cost, limits: after.limits, result };
  });
}
