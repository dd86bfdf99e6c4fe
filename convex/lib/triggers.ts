import { Triggers } from "convex-helpers/server/triggers";
import type { DataModel } from "../_generated/dataModel";
import {
  onJobChange,
  onLotChange,
  onPaymentChange,
  onSubscriptionChange,
  onUserChange,
} from "../model/metricsRollups";
import { lotHooks } from "../model/lots";
import { onVoidMark } from "../model/refunds";
import { rolloverOnExpiry } from "../model/subscriptionPeriods";

/**
 * Database triggers (convex-helpers): code that runs inside the mutation that writes a table,
 * keeping denormalised data in step. Every mutation of this app is built with `mutation` or
 * `internalMutation` from lib/functions.ts, which wrap `ctx.db` with these (lint forbids the
 * unwrapped builders), so no write path can skip them. Today: the metrics rollups.
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
triggers.register("creditLots", onLotChange);

lotHooks.onExpiring(rolloverOnExpiry);
lotHooks.onVoidMark(onVoidMark);
