import { afterEach, describe, expect, test, vi } from "vitest";
import type { Id } from "../convex/_generated/dataModel";
import { addMonthsUtc } from "../convex/model/calendar";
import { checkInvariants } from "./support/invariants";
import { DAY } from "./support/billing";
import { mandateWorld, type MandateWorld } from "./support/mandates";

/**
 * Renewals charged on the user's mandate, and dunning (docs/subscriptions.md, "Renewals on a
 * mandate"). TrueLayer's payments on mandates are stubbed (support/mandates.ts); mandates are
 * inserted authorised. Plans: starter 1000, creator 3100, studio 6000 (minor units).
 */

afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllEnvs();
  vi.unstubAllGlobals();
});

/** A creator subscriber anchored at `start`, with an authorised mandate. */
async function mandateSubscriber(w: MandateWorld, limits?: { maxAmount?: number }) {
  const { as, userId } = await w.user("sub_m");
  await w.pay(await w.checkout(as, "creator"));
  const mandateId = await w.authorizeMandate(userId, limits);
  return { as, userId, mandateId };
}

/** Every charge TrueLayer created for the user gets its outcome: executed. */
async function executeCharges(w: MandateWorld, userId: Id<"users">) {
  for (const payment of await w.renewals(userId)) {
    if (payment.status === "pending" && payment.trueLayerTxnId !== "") {
      await w.pay(payment._id);
    }
  }
}

const ANCHORS = {
  "the 28th": "2026-01-28T09:00:00Z",
  "the 29th": "2026-01-29T09:00:00Z",
  "the 30th": "2026-01-30T09:00:00Z",
  "the 31st": "2026-01-31T09:00:00Z",
  "29 Feb": "2028-02-29T09:00:00Z",
};

describe("a year of renewals on a mandate", () => {
  test.each(Object.entries(ANCHORS))(
    "anchored on %s: 12 renewals charged without the user, one period each",
    async (_name, iso) => {
      const anchor = Date.parse(iso);
      const w = await mandateWorld(anchor);
      const { userId, mandateId } = await mandateSubscriber(w);
      for (let n = 0; n < 12; n++) {
        const end = addMonthsUtc(anchor, n + 1);
        await w.at(end - 3 * DAY);
        const { sub } = await w.state(userId);
        expect(sub!.renewal).toMatchObject({
          method: "mandate",
          status: "pending",
          payUrl: null,
          periodIndex: n + 1,
          dueAt: end,
        });
        await executeCharges(w, userId);
        await w.at(end);
        expect((await w.state(userId)).sub).toMatchObject({
          status: "active",
          periodIndex: n + 1,
          currentPeriodStart: end,
          currentPeriodEnd: addMonthsUtc(anchor, n + 2),
        });
      }
      const renewals = await w.renewals(userId);
      expect(renewals).toHaveLength(12);
      expect(renewals.every((p) => p.method === "mandate" && p.mandateId === mandateId)).toBe(true);
      expect(renewals.every((p) => p.status === "executed")).toBe(true);
      // One TrueLayer payment per period, each on the mandate with a key of its own.
      expect(w.charges).toHaveLength(12);
      expect(new Set(w.charges.map((c) => c.idempotencyKey)).size).toBe(12);
      const periodLots = (await w.state(userId)).lots.filter((l) => l.source === "period");
      expect(periodLots).toHaveLength(13);
      await checkInvariants(w.t);
    },
  );
});
