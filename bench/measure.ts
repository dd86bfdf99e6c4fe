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

/**
 * The real `setImmediate`, taken before the runner fakes timers. Yielding through it between
 * transactions lets the worker's event loop answer vitest's RPC (`onTaskUpdate` and the like):
 * convex-test runs a transaction on promises alone, so a drain or a seed of thousands of
 * transactions would otherwise hold the loop for minutes, and the RPC's 60 s timer fires before
 * its answer is read (`Timeout calling "onTaskUpdate"`, exit 1 although every case passed).
 */
const realSetImmediate = globalThis.setImmediate;
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => realSetImmediate(() => resolve()));
}

/** `client`, whose every `run` first yields to the event loop (see `yieldToEventLoop`). */
export function answering<C extends Client>(client: C): C {
  const run = client.run.bind(client);
  client.run = async (fn) => {
    await yieldToEventLoop();
    return await run(fn);
  };
  return client;
}

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
  await yieldToEventLoop();
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
