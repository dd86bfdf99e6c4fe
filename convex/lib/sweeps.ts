import { makeFunctionReference, type RegisteredMutation } from "convex/server";
import type { Validator } from "convex/values";
import type { MutationCtx } from "../_generated/server";
import { internalMutation } from "./functions";

/**
 * The one shape of every cron sweep: an internal mutation that does one bounded batch of what is
 * due now and, while a backlog remains (`more`), schedules itself again at once, so a backlog of
 * any size drains in transactions far below Convex's limits.
 *
 * `name` is the function's own path ("module:export"): a reference built from it, since a
 * function's `internal.*` reference cannot be typed inside its own definition. The sweeps' tests
 * check that each one reschedules itself.
 */
export function sweepMutation<Result extends { more: boolean }>(def: {
  name: string;
  returns: Validator<Result, "required", string>;
  batch: (ctx: MutationCtx, now: number) => Promise<Result>;
}) {
  const self = makeFunctionReference<"mutation", Record<string, never>>(def.name);
  const sweep = internalMutation({
    args: {},
    returns: def.returns,
    handler: async (ctx) => {
      const result = await def.batch(ctx, Date.now());
      if (result.more) {
        await ctx.scheduler.runAfter(0, self, {});
      }
      // `returns` validates it; Convex's type of a generic validator's value cannot be named here.
      return result as never;
    },
  });
  return sweep as unknown as RegisteredMutation<"internal", Record<string, never>, Promise<Result>>;
}
