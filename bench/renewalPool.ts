import { vi } from "vitest";
import { RENEWAL_CREATION_PARALLELISM } from "../convex/lib/workpools";
import {
  PAYMENTS_URL,
  generateEs512Key,
  jsonResponse,
  stubTrueLayerEnv,
  trueLayerNetwork,
  type EcKey,
} from "../tests/support/truelayer";
import { yieldToEventLoop } from "./measure";
import type { BenchEnv } from "./seed";

/**
 * The renewal creation workpool under a burst (convex/lib/workpools.ts): once the sweep has
 * recorded the N renewals due at the same second, each waits in the pool as one `createRenewal`
 * run, and running the pool creates them with TrueLayer at most `RENEWAL_CREATION_PARALLELISM`
 * at a time.
 *
 * TrueLayer is stubbed, and holds every payment creation until no other one has arrived for a
 * while (`QUIET_TURNS` turns of the real event loop), so every run the pool started is in flight
 * together: an unbounded design would show all of them at once. The first
 * `RENEWAL_CREATIONS_RUN` creations are run (enough for many rounds of the pool, the same at
 * every N, so the bench's time does not grow with N); the rest stay queued in the pool.
 */
export const RENEWAL_CREATIONS_RUN = 200;
const QUIET_TURNS = 20;
/** The fake clock's step: the pool's loop works on 100 ms segments. */
const TICK_MS = 100;

let keys: { merchant: EcKey; webhooks: EcKey } | undefined;

/** `onMandate`: of the `created`, payments on a mandate (`payment_method.type === "mandate"`). */
export type RenewalPoolRun = {
  created: number;
  onMandate: number;
  maxInFlight: number;
  limit: number;
};

/**
 * The drained sweep's own continuations (one per step, never run: the runner drove every step
 * itself) are canceled, so that moving the clock runs the pool alone: a thousand no-op sweeps
 * firing at once would hold the event loop for minutes at N = 10,000.
 */
async function cancelSweepContinuations(env: BenchEnv) {
  const ids = await env.t.run(async (ctx) =>
    (await ctx.db.system.query("_scheduled_functions").collect())
      .filter((job) => job.state.kind === "pending" && job.name.endsWith("sweepDue"))
      .map((job) => job._id),
  );
  for (let start = 0; start < ids.length; start += 500) {
    await env.t.run(async (ctx) => {
      for (const id of ids.slice(start, start + 500)) {
        await ctx.scheduler.cancel(id);
      }
    });
  }
}

export async function runRenewalCreationPool(env: BenchEnv): Promise<RenewalPoolRun> {
  await cancelSweepContinuations(env);
  keys ??= {
    merchant: generateEs512Key("bench-merchant"),
    webhooks: generateEs512Key("bench-webhooks"),
  };
  stubTrueLayerEnv(keys.merchant);
  let inFlight = 0;
  let maxInFlight = 0;
  let arrivals = 0;
  let created = 0;
  let onMandate = 0;
  trueLayerNetwork(keys.webhooks, {
    [PAYMENTS_URL]: async (request) => {
      inFlight++;
      arrivals++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      let seen = arrivals;
      for (let quiet = 0; quiet < QUIET_TURNS; quiet++) {
        await yieldToEventLoop();
        if (arrivals !== seen) {
          seen = arrivals;
          quiet = -1;
        }
      }
      inFlight--;
      created++;
      const body = JSON.parse(request.body) as {
        metadata: { cineweave_payment_id: string };
        payment_method: { type: string };
      };
      if (body.payment_method.type === "mandate") onMandate++;
      return jsonResponse(201, {
        id: `tl-${body.metadata.cineweave_payment_id}`,
        resource_token: "rt",
        status: "authorization_required",
      });
    },
  });
  try {
    // Generous: a pool that stalls fails here instead of hanging.
    const maxTicks = (RENEWAL_CREATIONS_RUN / RENEWAL_CREATION_PARALLELISM) * 100;
    for (let tick = 0; created < Math.min(RENEWAL_CREATIONS_RUN, env.n); tick++) {
      if (tick > maxTicks) {
        throw new Error(`bench: the renewal pool created ${created} renewals in ${tick} ticks`);
      }
      vi.advanceTimersByTime(TICK_MS);
      await env.t.finishInProgressScheduledFunctions();
    }
  } finally {
    vi.unstubAllGlobals();
  }
  if (maxInFlight > RENEWAL_CREATION_PARALLELISM) {
    throw new Error(
      `bench: ${maxInFlight} TrueLayer calls in flight at once (limit ${RENEWAL_CREATION_PARALLELISM})`,
    );
  }
  return { created, onMandate, maxInFlight, limit: RENEWAL_CREATION_PARALLELISM };
}
