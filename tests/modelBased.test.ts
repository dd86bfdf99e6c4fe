/**
 * Model-based test of the credit and job system (fast-check). A reference model, written
 * without importing any of the backend's rules, predicts every command's outcome; after each
 * command the database must agree with it and satisfy the money invariants.
 *
 * Profiles: `npm test` runs MODEL_RUNS (default 150) sequences; `npm run test:deep` runs 10,000.
 * A failure prints fast-check's seed and shrunk counterexample; replay it with MODEL_SEED,
 * MODEL_PATH and MODEL_REPLAY (the counterexample's replayPath).
 */
import fc from "fast-check";
import { afterAll, afterEach, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import { createJob as createJobInTransaction } from "../convex/model/jobRequests";
import { CLAIM_MAX_SKIPS } from "../convex/model/worker";
import { checkInvariants } from "./support/invariants";
import {
  drainRenewalCreations,
  finishDueScheduledFunctions,
  identityFor,
  setup,
  type TestConvex,
} from "./support/setup";
import { Webhook } from "svix";
import {
  PAYMENTS_URL,
  deliverTrueLayer,
  generateEs512Key,
  jsonResponse,
  stubTrueLayerEnv,
  trueLayerNetwork,
  type EcKey,
} from "./support/truelayer";

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;
const R2 = "https://r2.example.com/video.mp4";
const START = Date.parse("2026-11-25T00:00:00Z");

// ---------------------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------------------

type Status = "queued" | "running" | "done" | "failed" | "canceled" | "expired";
type Money = "held" | "settled" | "refunded";
type PlanName = "starter" | "creator" | "studio";

/** A credit lot, as the product promises it behaves (restated, not imported). */
type ModelLot = {
  source: "welcome" | "purchase" | "adjustment" | "returned" | "period" | "upgrade" | "rollover";
  granted: number;
  remaining: number;
  held: number;
  /** Held credits of a refunded payment, voided when released. */
  voidMark: number;
  expiresAt?: number;
  status: "active" | "spent" | "expired" | "voided";
  created: number;
  seq: number;
  payment?: number;
  /** Returned lots: the UTC day their credits came back. */
  day?: number;
  /** Period and upgrade lots: their subscription and period. */
  sub?: ModelSub;
  index?: number;
  gen?: number;
};
/** A subscription, as the product promises it behaves (restated, not imported). */
type ModelSub = {
  status: "incomplete" | "active" | "past_due" | "canceled";
  plan: PlanName;
  anchor?: number;
  index: number;
  start?: number;
  end?: number;
  cancel: boolean;
  /** A downgrade scheduled for the period end. */
  pendingPlan?: PlanName;
  /** createRenewal runs a resume scheduled, not yet run (`clamped`: over Node's timer limit). */
  renewalChecks: Array<{ runAt: number; end: number; clamped: boolean }>;
  graceEndsAt?: number;
  /** The renewal payment (model index) of the next period; creations TrueLayer refused. */
  renewal?: {
    payment: number;
    index: number;
    status: "pending" | "paid" | "failed";
    attempts?: number;
    retryAt?: number;
    /** Charged on the user's mandate, or on the hosted page. */
    method?: "mandate" | "manual";
    /** Charges of this period on the mandate the payer's bank refused (dunning). */
    refusals?: number;
  };
  /** How often the anchor was set. */
  gen: number;
  seq: number;
};
type ModelUser = {
  signedUp: boolean;
  deleted: boolean;
  /** An authorised mandate and its maximum per payment (its monthly limit is never reached). */
  mandate?: { maxAmount: number };
  lots: ModelLot[];
  subs: ModelSub[];
  plan: PlanName;
};
type Allocation = { lot: ModelLot; credits: number };
type ModelPayment = {
  user: number;
  plan: PlanName;
  purpose: "start" | "upgrade" | "renewal";
  sub: ModelSub;
  /** The quote: the period and anchoring it was made for (renewals: paid; upgrades: converted). */
  periodIndex?: number;
  gen?: number;
  /** Upgrades: the plan upgraded from and its unused credits priced in. */
  fromPlan?: PlanName;
  quoted?: number;
  /** TrueLayer's id; absent for a renewal TrueLayer refused to create (its events name none). */
  trueLayerId?: string;
  /** Renewals charged on the mandate (absent: paid on the hosted page). */
  method?: "mandate";
  /** Minor units, fixed when the payment was made. */
  amount: number;
  status: "pending" | "failed" | "succeeded";
  creditsAdded: number;
  refund?: "pending" | "executed" | "failed";
  /** Credits the executed refund took back (at once; held ones voided later are not counted). */
  reclaimed: number;
  /** Executed refunds taken back by the bank. */
  returned: number;
  /** Credits of the executed refund voided later, as the jobs holding them released them. */
  voidedLater: number;
  /** Event ids delivered so far, to replay one as a duplicate. */
  events: string[];
};
type ModelJob = {
  owner: number;
  status: Status;
  money: Money;
  cost: number;
  request: string;
  key?: string;
  expiresAt?: number;
  createdAt: number;
  attempt: number;
  /** The worker that claimed (or finished) the job, and its lease deadline while running. */
  worker?: string;
  allocations: Allocation[];
  lease?: number;
};
type Model = {
  users: ModelUser[];
  jobs: ModelJob[];
  payments: ModelPayment[];
  now: number;
  /** Whether TrueLayer accepts new payments (renewals); when not, a renewal fails at once. */
  trueLayerUp: boolean;
};
type Real = {
  t: TestConvex;
  userIds: Array<Id<"users"> | undefined>;
  jobIds: Array<Id<"jobs">>;
  paymentIds: Array<Id<"payments">>;
};

const USERS = 3;
const WORKERS = ["gpu-a", "gpu-b"] as const;
const SECRET = "model-worker-secret";
const LEASE_MS = 10 * 60 * 1000;
const MAX_ATTEMPTS = 3;
const QUEUE_TIMEOUT_MS = DAY;
const SIGN_UP_CREDITS = 80;
const PLAN_CREDITS: Record<PlanName, number> = { starter: 80, creator: 250, studio: 500 };
const PLAN_PRICE: Record<PlanName, number> = { starter: 1000, creator: 3100, studio: 6000 };
/**
 * The crons run at least this often while time passes (for real: every 10 minutes). Not longer
 * than the renewal lead, so a renewal's creation and its period's end never fall between the
 * same two runs (their scheduled functions would then race, which the real clock never does).
 */
const CRON_STEP = 3 * DAY; // = RENEWAL_LEAD
const RENEWAL_LEAD = 3 * DAY;
const GRACE = 7 * DAY;
/** Dunning: a refused charge on a mandate is charged again this long after the period end. */
const DUNNING = [1 * DAY, 3 * DAY, 5 * DAY];
/** A renewal TrueLayer refused to create this often is made on the hosted page. */
const CREATION_TRIES = 3;
const CLERK_SECRET = `whsec_${Buffer.from("model-based-clerk-secret").toString("base64")}`;
const trueLayerKey: EcKey = generateEs512Key("tl-model");
const merchantKey: EcKey = generateEs512Key("merchant-model");
let eventCounter = 0;
/** TrueLayer's payments endpoint in the stubbed network: creates payments while `up`. */
const trueLayerApi = { up: true };
// What the product promises, restated independently of the code.
const NEXT: Record<Status, Status[]> = {
  queued: ["running", "failed", "canceled"],
  running: ["done", "failed", "queued"],
  done: ["expired"],
  failed: [],
  canceled: [],
  expired: [],
};

const stats = { sequences: 0, commands: 0, faults: 0, byCommand: {} as Record<string, number> };
function count(name: string, fault = false) {
  stats.commands++;
  if (fault) stats.faults++;
  stats.byCommand[name] = (stats.byCommand[name] ?? 0) + 1;
}

// --- the credit lots --------------------------------------------------------------------------

let lotSeq = 0;
const availableIn = (lot: ModelLot) => (lot.status === "active" ? lot.remaining - lot.held : 0);
const available = (u: ModelUser) => u.lots.reduce((t, lot) => t + availableIn(lot), 0);
const reserved = (u: ModelUser) => u.lots.reduce((t, lot) => t + lot.held, 0);
function settleStatus(lot: ModelLot) {
  if (lot.status === "active" && lot.remaining === 0) lot.status = "spent";
}
function newLot(
  u: ModelUser,
  model: Model,
  lot: Omit<ModelLot, "remaining" | "held" | "voidMark" | "status" | "created" | "seq">,
) {
  const made: ModelLot = {
    ...lot,
    remaining: lot.granted,
    held: 0,
    voidMark: 0,
    status: "active",
    created: model.now,
    seq: ++lotSeq,
  };
  u.lots.push(made);
  return made;
}
/** Soonest expiry first, never last; promotional before paid; oldest first. */
function spendingOrder(u: ModelUser): ModelLot[] {
  const paidFor = ["purchase", "period", "upgrade", "rollover"];
  const paid = (lot: ModelLot) => (paidFor.includes(lot.source) ? 1 : 0);
  return u.lots
    .filter((lot) => availableIn(lot) > 0)
    .sort(
      (a, b) =>
        (a.expiresAt ?? Infinity) - (b.expiresAt ?? Infinity) ||
        paid(a) - paid(b) ||
        a.created - b.created ||
        a.seq - b.seq,
    );
}
/** Calendar months in UTC, the day clamped to the month: 31 Jan + 1 = 28/29 Feb. */
function plusMonth(time: number, months = 1): number {
  const d = new Date(time);
  const target = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + months, 1));
  const days = new Date(
    Date.UTC(target.getUTCFullYear(), target.getUTCMonth() + 1, 0),
  ).getUTCDate();
  target.setUTCDate(Math.min(d.getUTCDate(), days));
  target.setUTCHours(d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds());
  return target.getTime();
}
function expireLot(model: Model, u: ModelUser, lot: ModelLot) {
  if (!(lot.status === "active" && lot.expiresAt !== undefined && lot.expiresAt <= model.now)) {
    return;
  }
  const sub = lot.sub;
  const unused = availableIn(lot);
  const paid = sub === undefined ? undefined : paidNext(model, sub);
  if (
    sub !== undefined &&
    sub.anchor !== undefined &&
    unused > 0 &&
    (sub.status === "active" || sub.status === "past_due") &&
    !(sub.cancel && paid === undefined) &&
    (lot.expiresAt === sub.end || lot.expiresAt === sub.start)
  ) {
    // Rolls over once into the next period, capped at its plan.
    const ending = lot.expiresAt === sub.end;
    const nextEnd = ending ? plusMonth(sub.anchor, sub.index + 2) : sub.end!;
    const nextPlan = ending ? (paid?.plan ?? sub.pendingPlan ?? sub.plan) : sub.plan;
    const credits = Math.min(unused, PLAN_CREDITS[nextPlan]);
    lot.remaining -= unused;
    if (credits > 0 && nextEnd > model.now) {
      // Still the payment's credits: a refund of it reaches them.
      newLot(u, model, {
        source: "rollover",
        granted: credits,
        expiresAt: nextEnd,
        payment: lot.payment,
      });
    }
  }
  lot.remaining = lot.held;
  lot.status = "expired";
}
/** Expires every lot that is due, in expiry order (as the sweep does). */
function expireDue(model: Model) {
  const due = model.users.flatMap((u) =>
    u.lots
      .filter((l) => l.status === "active" && l.expiresAt !== undefined && l.expiresAt <= model.now)
      .map((lot) => ({ u, lot })),
  );
  due.sort((a, b) => a.lot.expiresAt! - b.lot.expiresAt! || a.lot.seq - b.lot.seq);
  for (const { u, lot } of due) expireLot(model, u, lot);
}

// --- subscriptions ----------------------------------------------------------------------------

let subSeq = 0;
const liveSub = (u: ModelUser) => {
  const sub = u.subs[u.subs.length - 1];
  return sub !== undefined && (sub.status === "active" || sub.status === "past_due")
    ? sub
    : undefined;
};
function newSub(u: ModelUser, plan: PlanName): ModelSub {
  const sub: ModelSub = {
    status: "incomplete",
    plan,
    index: 0,
    cancel: false,
    renewalChecks: [],
    gen: 0,
    seq: ++subSeq,
  };
  u.subs.push(sub);
  return sub;
}
/** The payment of the next period, if it is paid already. */
function paidNext(model: Model, sub: ModelSub): ModelPayment | undefined {
  const renewal = sub.renewal;
  return renewal?.status === "paid" && renewal.index === sub.index + 1
    ? model.payments[renewal.payment]
    : undefined;
}
/** Credits a payment still buys (the model only refunds in full). */
const creditsLeft = (mp: ModelPayment) => Math.max(0, mp.creditsAdded - mp.reclaimed);
/** What a payment buys when its quote no longer holds: what it paid, at its plan's price per credit. */
const worthPaid = (mp: ModelPayment) =>
  Math.min(
    PLAN_CREDITS[mp.plan],
    Math.floor((mp.amount * PLAN_CREDITS[mp.plan]) / PLAN_PRICE[mp.plan]),
  );
const RETRY_BASE = 10 * 60 * 1000;
const RETRY_MAX = 6 * HOUR;
/**
 * When the next period's renewal is to be made: 3 days before an active period ends, unless
 * canceling or it exists (pending, paid, or failed by the payer's bank); one TrueLayer refused is
 * tried again at its retry time (10 min after it fell due, then doubling, at most 6 h apart).
 */
function renewalDue(sub: ModelSub): number | undefined {
  if (sub.status === "past_due") return dunningDue(sub);
  if (sub.status !== "active" || sub.cancel || sub.end === undefined) return undefined;
  const r = sub.renewal;
  if (r === undefined || r.index !== sub.index + 1) return sub.end - RENEWAL_LEAD;
  return r.status === "failed" && r.retryAt !== undefined && r.retryAt < sub.end
    ? r.retryAt
    : undefined;
}
/**
 * A past_due subscription whose grace's renewal on a mandate the bank refused n times (1–3) is
 * charged again n-th retry after the period end (1, 3, 5 days), later if TrueLayer could not
 * create the last try, never at the grace end, not once the user cancels.
 */
function dunningDue(sub: ModelSub): number | undefined {
  const r = sub.renewal;
  const refusals = r?.refusals ?? 0;
  if (
    r?.method !== "mandate" ||
    r.status !== "failed" ||
    r.index !== sub.index ||
    refusals === 0 ||
    refusals > DUNNING.length ||
    sub.cancel
  ) {
    return undefined;
  }
  const due = Math.max(sub.start! + DUNNING[refusals - 1], r.retryAt ?? 0);
  return due < sub.graceEndsAt! ? due : undefined;
}
/** A subscription ends: the user is back on the sign-up plan. */
function endSub(u: ModelUser, sub: ModelSub, fields: Partial<ModelSub> = { renewal: undefined }) {
  Object.assign(
    sub,
    { status: "canceled", pendingPlan: undefined, graceEndsAt: undefined },
    fields,
  );
  u.plan = "starter";
}
/** A payment's credits as a one-month lot of their own. */
function purchaseLot(model: Model, u: ModelUser, mp: ModelPayment) {
  if (creditsLeft(mp) <= 0) return;
  newLot(u, model, {
    source: "purchase",
    granted: creditsLeft(mp),
    expiresAt: plusMonth(model.now),
    payment: model.payments.indexOf(mp),
  });
}
/** An upgrade or comp sets the anchor again: a paid next period becomes a lot of its own. */
function creditPaidRenewal(model: Model, u: ModelUser, sub: ModelSub) {
  const paid = paidNext(model, sub);
  if (paid !== undefined) purchaseLot(model, u, paid);
}
/** createRenewal scheduled for `sub`'s current period (at its renewal time, or now if past). */
function scheduleRenewal(model: Model, sub: ModelSub) {
  const runAt = Math.max(model.now, sub.end! - RENEWAL_LEAD);
  sub.renewalChecks.push({ runAt, end: sub.end!, clamped: runAt - model.now > MAX_TIMER_MS });
}
/** A pending renewal no longer fits (a downgrade, a cancel, a comp): dropped, its payment failed. */
function dropPendingRenewal(model: Model, sub: ModelSub) {
  if (sub.renewal?.status !== "pending") return false;
  // A charge on a mandate TrueLayer created cannot be called back: it stands.
  if (model.payments[sub.renewal.payment]?.method === "mandate") {
    count("a charge on the mandate kept through a change");
    return false;
  }
  model.payments[sub.renewal.payment].status = "failed";
  sub.renewal = undefined;
  return true;
}
/** Unused credits valued at the plan's price per credit, rounded half up. */
const unusedValue = (unused: number, plan: PlanName) =>
  Math.floor((2 * unused * PLAN_PRICE[plan] + PLAN_CREDITS[plan]) / (2 * PLAN_CREDITS[plan]));
const planLotOf = (u: ModelUser, sub: ModelSub) =>
  u.lots.find((l) => l.sub === sub && l.gen === sub.gen && l.index === sub.index);
function beginPeriod(
  model: Model,
  u: ModelUser,
  sub: ModelSub,
  plan: PlanName,
  anchor: number,
  index: number,
  source: "period" | "upgrade",
  payment?: number,
  credits = PLAN_CREDITS[plan],
) {
  const end = plusMonth(anchor, index + 1);
  if (index === 0 || anchor !== sub.anchor) sub.gen += 1;
  Object.assign(sub, {
    status: "active",
    plan,
    anchor,
    index,
    start: plusMonth(anchor, index),
    end,
    renewal: undefined,
    pendingPlan: undefined,
    graceEndsAt: undefined,
  });
  grantPeriod(model, u, sub, index, end, source, credits, payment);
  scheduleRenewal(model, sub);
  u.plan = plan;
}
function grantPeriod(
  model: Model,
  u: ModelUser,
  sub: ModelSub,
  index: number,
  end: number,
  source: "period" | "upgrade",
  credits: number,
  payment?: number,
) {
  if (end <= model.now) {
    // Over before it began (its close ran late): a paid period arrives as a month of its own.
    if (payment !== undefined) purchaseLot(model, u, model.payments[payment]);
    return;
  }
  if (credits <= 0) return;
  newLot(u, model, {
    source,
    granted: credits,
    expiresAt: end,
    sub,
    index,
    gen: sub.gen,
    payment,
  });
}
/** Converts (voids) up to `max` available credits of the current plan lot; returns how many. */
function convert(u: ModelUser, sub: ModelSub, max = Infinity) {
  const lot = planLotOf(u, sub);
  if (lot === undefined) return 0;
  const credits = Math.min(max, availableIn(lot));
  lot.remaining -= credits;
  settleStatus(lot);
  return credits;
}
/** What a checkout of `plan` pays for, or null when it is refused (INVALID_ARGUMENT). */
function checkoutPurpose(u: ModelUser, plan: PlanName) {
  const live = liveSub(u);
  if (live === undefined) return { purpose: "start" as const, amount: PLAN_PRICE[plan] };
  if (PLAN_CREDITS[plan] > PLAN_CREDITS[live.plan]) {
    const lot = planLotOf(u, live);
    const unused = lot === undefined ? 0 : availableIn(lot);
    const amount = Math.max(1, PLAN_PRICE[plan] - unusedValue(unused, live.plan));
    return {
      purpose: "upgrade" as const,
      sub: live,
      amount,
      periodIndex: live.index,
      gen: live.gen,
      fromPlan: live.plan,
      quoted: unused,
    };
  }
  if (live.status === "past_due" && plan === live.plan) {
    return {
      purpose: "renewal" as const,
      sub: live,
      periodIndex: live.index,
      gen: live.gen,
      amount: PLAN_PRICE[plan],
    };
  }
  return null;
}
/**
 * A subscription payment succeeded (first time). The quote rule: applied as quoted while its
 * quote still describes the subscription; otherwise a one-month lot worth what was paid, or (a
 * start or renewal with no live subscription, the user not deleted) a new subscription.
 */
function paymentSucceeded(model: Model, mp: ModelPayment, index: number) {
  const u = model.users[mp.user];
  const sub = mp.sub;
  const live = (s: ModelSub) => s.status === "active" || s.status === "past_due";
  mp.creditsAdded = PLAN_CREDITS[mp.plan];
  if (mp.purpose === "start" && sub.status === "incomplete") {
    beginPeriod(model, u, sub, mp.plan, model.now, 0, "period", index);
  } else if (
    mp.purpose === "upgrade" &&
    live(sub) &&
    sub === liveSub(u) &&
    sub.gen === mp.gen &&
    sub.index === mp.periodIndex &&
    sub.plan === mp.fromPlan
  ) {
    // As quoted; priced-in credits spent meanwhile make the new plan lot smaller by their value.
    const converted = convert(u, sub, mp.quoted);
    const spentValue = unusedValue(mp.quoted! - converted, mp.fromPlan);
    const short = Math.ceil((spentValue * PLAN_CREDITS[mp.plan]) / PLAN_PRICE[mp.plan]);
    if (short > 0) count("upgrade paid after priced-in credits were spent");
    mp.creditsAdded = Math.max(0, PLAN_CREDITS[mp.plan] - short);
    creditPaidRenewal(model, u, sub);
    beginPeriod(model, u, sub, mp.plan, model.now, 0, "upgrade", index, mp.creditsAdded);
  } else if (
    mp.purpose === "renewal" &&
    mp.gen === sub.gen &&
    sub.status === "active" &&
    sub.renewal?.payment === index &&
    mp.periodIndex === sub.index + 1
  ) {
    count("renewal paid ahead");
    sub.renewal.status = "paid";
  } else if (
    mp.purpose === "renewal" &&
    mp.gen === sub.gen &&
    sub.status === "past_due" &&
    mp.periodIndex === sub.index
  ) {
    count("renewal paid in the grace");
    Object.assign(sub, { status: "active", graceEndsAt: undefined, renewal: undefined });
    grantPeriod(model, u, sub, sub.index, sub.end!, "period", creditsLeft(mp), index);
    scheduleRenewal(model, sub);
    u.plan = sub.plan;
  } else if (liveSub(u) !== undefined || mp.purpose === "upgrade" || u.deleted) {
    count(
      mp.purpose === "upgrade"
        ? "upgrade whose quote no longer held: a lot worth what was paid"
        : "payment matching no period: a lot of its own",
    );
    mp.creditsAdded = worthPaid(mp);
    purchaseLot(model, u, mp);
  } else {
    if (mp.purpose === "renewal") count("renewal paid after the end: a new subscription");
    const last = u.subs[u.subs.length - 1];
    const fresh = last?.status === "incomplete" ? last : newSub(u, mp.plan);
    mp.sub = fresh;
    beginPeriod(model, u, fresh, mp.plan, model.now, 0, "period", index);
  }
}
const MAX_TIMER_MS = 2 ** 31 - 1;
/**
 * The createRenewal runs that resumes scheduled and that fire now (`first`: the drain just after
 * the last command, where over-limit timers fire at once): each makes a renewal payment if one is
 * due and none is in flight. Returns the subscriptions that made one, in order.
 */
/** A renewal the backend made: for which subscription, period, plan and anchoring. */
type MadeRenewal = {
  u: number;
  sub: ModelSub;
  index: number;
  plan: PlanName;
  gen: number;
  method: "mandate" | "manual";
};
function madeRenewal(model: Model, u: number, sub: ModelSub): MadeRenewal {
  // In flight (pending) until the renewal creation workpool has run at the end of the cron step
  // (recordRenewals): while TrueLayer is down it fails then, to be tried again later. A past_due
  // subscription's is the next dunning charge of its grace's period, on its plan.
  const dunning = sub.status === "past_due";
  const index = dunning ? sub.index : sub.index + 1;
  const plan = dunning ? sub.plan : (sub.pendingPlan ?? sub.plan);
  const earlier = sub.renewal?.index === index ? sub.renewal : undefined;
  const mandate = model.users[u].mandate;
  const method =
    mandate !== undefined &&
    PLAN_PRICE[plan] <= mandate.maxAmount &&
    (earlier?.attempts ?? 0) < CREATION_TRIES
      ? "mandate"
      : "manual";
  count(dunning ? "dunning charge" : `renewal made (${method})`);
  sub.renewal = {
    payment: -1,
    index,
    status: "pending",
    ...retries(earlier),
    method,
    refusals: earlier?.refusals,
  };
  return { u, sub, index, plan, gen: sub.gen, method };
}
/** A renewal TrueLayer refused: failed, tried again after a backoff from its last try. */
function refusedRenewal(sub: ModelSub, renewal: NonNullable<ModelSub["renewal"]>) {
  const attempts = (renewal.attempts ?? 0) + 1;
  const firstTry =
    sub.status === "past_due"
      ? sub.start! + DUNNING[(renewal.refusals ?? 1) - 1]
      : sub.end! - RENEWAL_LEAD;
  const lastTry = renewal.retryAt ?? firstTry;
  Object.assign(renewal, {
    status: "failed",
    attempts,
    retryAt: lastTry + Math.min(RETRY_BASE * 2 ** (attempts - 1), RETRY_MAX),
  });
}
const retries = (r?: { attempts?: number; retryAt?: number }) =>
  r?.attempts === undefined ? {} : { attempts: r.attempts, retryAt: r.retryAt };
function runRenewalChecks(model: Model, first: boolean): MadeRenewal[] {
  const made: MadeRenewal[] = [];
  model.users.forEach((u, i) => {
    for (const sub of u.subs) {
      const fire = sub.renewalChecks.filter((c) => (first && c.clamped) || c.runAt <= model.now);
      sub.renewalChecks = sub.renewalChecks.filter((c) => !fire.includes(c));
      for (const check of fire) {
        const due = renewalDue(sub);
        if (sub.end === check.end && due !== undefined && due <= model.now) {
          made.push(madeRenewal(model, i, sub));
        }
      }
    }
  });
  return made;
}

/** The subscription sweep at `model.now`: period ends, then grace ends, then due renewals. */
function sweepSubscriptions(model: Model): MadeRenewal[] {
  const all = model.users.flatMap((u, i) => u.subs.map((sub) => ({ u, i, sub })));
  const byEnd = all
    .filter(({ sub }) => sub.status === "active" && sub.end! <= model.now)
    .sort((a, b) => a.sub.end! - b.sub.end! || a.sub.seq - b.sub.seq);
  for (const { u, sub } of byEnd) {
    const lot = planLotOf(u, sub);
    if (lot !== undefined) expireLot(model, u, lot);
    const next = sub.index + 1;
    const paid = paidNext(model, sub);
    if (paid !== undefined) {
      // Paid for: the period begins; a cancel or downgrade chosen since waits for its end.
      const pending = sub.pendingPlan;
      const payment = sub.renewal!.payment;
      beginPeriod(
        model,
        u,
        sub,
        paid.plan,
        sub.anchor!,
        next,
        "period",
        payment,
        creditsLeft(paid),
      );
      sub.pendingPlan = pending === paid.plan ? undefined : pending;
      continue;
    }
    if (sub.cancel) {
      endSub(u, sub);
      continue;
    }
    sub.plan = sub.pendingPlan ?? sub.plan;
    sub.pendingPlan = undefined;
    u.plan = sub.plan;
    Object.assign(sub, {
      status: "past_due",
      index: next,
      start: sub.end,
      end: plusMonth(sub.anchor!, next + 1),
      graceEndsAt: sub.end! + GRACE,
    });
  }
  const byGrace = all
    .filter(({ sub }) => sub.status === "past_due" && sub.graceEndsAt! <= model.now)
    .sort((a, b) => a.sub.graceEndsAt! - b.sub.graceEndsAt! || a.sub.seq - b.sub.seq);
  for (const { u, sub } of byGrace) endSub(u, sub);
  const renewals = all
    .filter(({ sub }) => renewalDue(sub) !== undefined && renewalDue(sub)! <= model.now)
    .sort((a, b) => renewalDue(a.sub)! - renewalDue(b.sub)! || a.sub.seq - b.sub.seq);
  return renewals.map(({ i, sub }) => madeRenewal(model, i, sub));
}
function hold(u: ModelUser, cost: number): Allocation[] {
  const allocations: Allocation[] = [];
  let needed = cost;
  for (const lot of spendingOrder(u)) {
    const take = Math.min(needed, availableIn(lot));
    lot.held += take;
    allocations.push({ lot, credits: take });
    needed -= take;
    if (needed === 0) break;
  }
  return allocations;
}
function removeAvailable(u: ModelUser, credits: number) {
  let needed = credits;
  for (const lot of spendingOrder(u)) {
    const take = Math.min(needed, availableIn(lot));
    lot.remaining -= take;
    settleStatus(lot);
    needed -= take;
    if (needed === 0) break;
  }
}
function settle(job: ModelJob) {
  for (const { lot, credits } of job.allocations) {
    lot.remaining -= credits;
    lot.held -= credits;
    lot.voidMark -= Math.min(credits, lot.voidMark);
    settleStatus(lot);
  }
}
function release(model: Model, u: ModelUser, job: ModelJob) {
  expireDue(model);
  for (const { lot, credits } of job.allocations) {
    const voided = Math.min(credits, lot.voidMark);
    if (lot.payment !== undefined) model.payments[lot.payment].voidedLater += voided;
    lot.voidMark -= voided;
    lot.remaining -= voided;
    lot.held -= voided;
    const rest = credits - voided;
    lot.held -= rest;
    if (lot.status !== "active") {
      // Its lot expired or was voided: back as the day's returned lot (one per payment they
      // came from, which a refund of it reaches), good for 7 more days.
      lot.remaining -= rest;
      const day = Math.floor(model.now / DAY) * DAY;
      const returned = u.lots.find(
        (l) =>
          l.source === "returned" &&
          l.day === day &&
          l.payment === lot.payment &&
          l.status === "active",
      );
      if (rest > 0 && returned !== undefined) {
        returned.granted += rest;
        returned.remaining += rest;
      } else if (rest > 0) {
        newLot(u, model, {
          source: "returned",
          granted: rest,
          expiresAt: day + 8 * DAY,
          day,
          payment: lot.payment,
        });
      }
    }
    settleStatus(lot);
  }
}

/** Applies a status change to the model: its money effect and its bookkeeping. */
function moveJob(model: Model, job: ModelJob, to: Status, finishingWorker?: string) {
  const user = model.users[job.owner];
  job.status = to;
  job.lease = undefined;
  if (to !== "running") job.worker = finishingWorker;
  if (to === "done") {
    job.money = "settled";
    job.expiresAt = model.now + DAY;
    settle(job);
  } else if (to === "failed" || to === "canceled") {
    job.money = "refunded";
    release(model, user, job);
  }
}

async function expectRefusal(promise: Promise<unknown>, code: string) {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected ${code}`).toMatchObject({ data: { code } });
}

/** The database agrees with the model, and the money invariants hold. */
async function compare(model: Model, real: Real) {
  const { users, jobs, payments, subscriptions, lots } = await real.t.run(async (ctx) => ({
    users: await ctx.db.query("users").collect(),
    jobs: await ctx.db.query("jobs").collect(),
    payments: await ctx.db.query("payments").collect(),
    subscriptions: await ctx.db.query("subscriptions").collect(),
    lots: await ctx.db.query("creditLots").collect(),
  }));
  // Every subscription's period dates follow the anchor rule, and a user has at most one live one.
  for (const sub of subscriptions) {
    if (sub.anchor === undefined) continue;
    expect([sub.currentPeriodStart, sub.currentPeriodEnd], "periods from the anchor").toEqual([
      plusMonth(sub.anchor, sub.periodIndex),
      plusMonth(sub.anchor, sub.periodIndex + 1),
    ]);
  }
  for (const user of users) {
    const live = subscriptions.filter(
      (sub) => sub.userId === user._id && (sub.status === "active" || sub.status === "past_due"),
    );
    expect(live.length, "one live subscription per user").toBeLessThanOrEqual(1);
  }
  expect(payments).toHaveLength(model.payments.length);
  model.payments.forEach((mp, i) => {
    const row = payments.find((p) => p._id === real.paymentIds[i])!;
    expect({
      status: row.status === "executed" || row.status === "settled" ? "succeeded" : row.status,
      creditsAdded: row.creditsAdded,
      refund: row.refundStatus,
      amount: row.amount,
      plan: row.planName,
      user: row.userId,
      method: row.method,
    }).toEqual({
      status: mp.status,
      creditsAdded: mp.creditsAdded,
      refund: mp.refund,
      amount: mp.amount,
      plan: mp.plan,
      user: real.userIds[mp.user],
      method: mp.method,
    });
  });
  // Money in: what the succeeded payments took, less what executed refunds gave back, is what
  // the model says was paid.
  const paidIn = (rows: Array<{ amount: number }>) => rows.reduce((t, r) => t + r.amount, 0);
  expect(
    paidIn(payments.filter((p) => p.status === "executed" || p.status === "settled")) -
      payments.reduce((t, p) => t + (p.refundedAmount ?? 0), 0),
    "money in = successful payments less refunds",
  ).toBe(
    paidIn(model.payments.filter((mp) => mp.status === "succeeded" && mp.refund !== "executed")),
  );
  // No credits for an unpaid period: every paid lot comes from a payment that succeeded, and a
  // payment grants at most what it bought (its own lots; rollover, returned and reversal lots
  // only move credits it granted).
  for (const lot of lots) {
    if (lot.paymentId === undefined) continue;
    const payment = payments.find((p) => p._id === lot.paymentId)!;
    expect(payment.status, `lot ${lot.source} of an unpaid payment`).toMatch(/executed|settled/);
  }
  for (const payment of payments) {
    const granted = lots
      .filter(
        (l) => l.paymentId === payment._id && ["purchase", "period", "upgrade"].includes(l.source),
      )
      .reduce((t, l) => t + l.granted, 0);
    expect(granted, "a payment grants at most what it gave").toBeLessThanOrEqual(
      payment.creditsAdded,
    );
    expect(payment.creditsAdded, "and gives at most what it bought").toBeLessThanOrEqual(
      payment.creditsPurchased,
    );
  }
  // The subscriptions, per user in the order they were made.
  model.users.forEach((mu, i) => {
    const rows = subscriptions
      .filter((sub) => sub.userId === real.userIds[i])
      .sort((a, b) => a._creationTime - b._creationTime);
    expect(
      rows.map((sub) => ({
        status: sub.status,
        plan: sub.plan,
        periodIndex: sub.periodIndex,
        cancel: sub.cancelAtPeriodEnd,
        pendingPlan: sub.pendingPlan,
        renewal: sub.renewal?.status,
        method: sub.renewal?.method,
        refusals: sub.renewal?.refusals,
        periodEnd: sub.currentPeriodEnd,
      })),
      `subscriptions of user ${i}`,
    ).toEqual(
      mu.subs.map((sub) => ({
        status: sub.status,
        plan: sub.plan,
        periodIndex: sub.index,
        cancel: sub.cancel,
        pendingPlan: sub.pendingPlan,
        renewal: sub.renewal?.status,
        method: sub.renewal?.method,
        refusals: sub.renewal?.refusals,
        periodEnd: sub.end,
      })),
    );
  });
  expect(users).toHaveLength(model.users.filter((u) => u.signedUp).length);
  model.users.forEach((mu, i) => {
    if (!mu.signedUp) return;
    const row = users.find((u) => u._id === real.userIds[i])!;
    expect({
      credits: row.credits,
      reserved: row.reservedCredits ?? 0,
      plan: row.plan,
      deleted: row.deletedAt !== undefined,
    }).toEqual({
      credits: available(mu),
      reserved: reserved(mu),
      plan: mu.plan,
      deleted: mu.deleted,
    });
  });
  expect(jobs).toHaveLength(model.jobs.length);
  model.jobs.forEach((mj, i) => {
    const row = jobs.find((j) => j._id === real.jobIds[i])!;
    expect({ status: row.status, money: row.creditStatus }).toEqual({
      status: mj.status,
      money: mj.money,
    });
  });
  await checkInvariants(real.t);
}

type Cmd = fc.AsyncCommand<Model, Real>;
const as = (real: Real, user: number) => real.t.withIdentity(identityFor(`user_${user}`));

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

class SignUp implements Cmd {
  constructor(readonly user: number) {}
  check = () => true;
  async run(model: Model, real: Real) {
    count("signUp");
    const clerkId = `user_${this.user}`;
    const call = as(real, this.user).mutation(api.users.getOrCreateUser, {
      clerkId,
      email: `${clerkId}@example.com`,
    });
    const mu = model.users[this.user];
    if (mu.deleted) {
      await expectRefusal(call, "FORBIDDEN");
    } else {
      const doc = await call;
      if (!mu.signedUp) {
        mu.signedUp = true;
        newLot(mu, model, { source: "welcome", granted: SIGN_UP_CREDITS });
        real.userIds[this.user] = doc._id;
      }
      expect(doc._id).toBe(real.userIds[this.user]);
    }
    await compare(model, real);
  }
  toString = () => `SignUp(${this.user})`;
}

class ChangePlan implements Cmd {
  constructor(
    readonly user: number,
    readonly plan: PlanName,
  ) {}
  check = (m: Readonly<Model>) => m.users[this.user].signedUp;
  async run(model: Model, real: Real) {
    count("changePlan");
    const call = real.t.mutation(internal.users.updateUserPlan, {
      userId: real.userIds[this.user]!,
      planName: this.plan,
    });
    if (model.users[this.user].deleted) {
      await expectRefusal(call, "FORBIDDEN");
      await compare(model, real);
      return;
    }
    await call;
    // An operator's comp: a new period now on the plan, the old plan lot converted; nothing
    // only when the subscription is active on that plan already.
    const mu = model.users[this.user];
    const live = liveSub(mu);
    if (!(live?.status === "active" && live.plan === this.plan)) {
      if (live?.status === "past_due") count("comp of a past_due subscription");
      const last = mu.subs[mu.subs.length - 1];
      const sub = live ?? (last?.status === "incomplete" ? last : newSub(mu, this.plan));
      if (live !== undefined) {
        creditPaidRenewal(model, mu, live);
        convert(mu, live);
        dropPendingRenewal(model, live);
      }
      beginPeriod(model, mu, sub, this.plan, model.now, 0, "period");
    }
    await compare(model, real);
  }
  toString = () => `ChangePlan(${this.user}, ${this.plan})`;
}

class Grant implements Cmd {
  constructor(
    readonly user: number,
    readonly credits: number,
  ) {}
  check = (m: Readonly<Model>) => m.users[this.user].signedUp;
  async run(model: Model, real: Real) {
    count("grant");
    const mu = model.users[this.user];
    const call = real.t.mutation(internal.credits.grantCredits, {
      userId: real.userIds[this.user]!,
      credits: this.credits,
      note: "model",
    });
    expireDue(model);
    if (available(mu) + this.credits < 0) {
      await expectRefusal(call, "INSUFFICIENT_CREDITS");
    } else {
      await call;
      if (this.credits > 0) newLot(mu, model, { source: "adjustment", granted: this.credits });
      else removeAvailable(mu, -this.credits);
    }
    await compare(model, real);
  }
  toString = () => `Grant(${this.user}, ${this.credits})`;
}

class CreateJob implements Cmd {
  constructor(
    readonly user: number,
    readonly durationSec: 5 | 10 | 15,
    readonly promptVariant: number,
    readonly key: string | undefined,
    readonly duplicate: boolean,
  ) {}
  check = () => true;
  async run(model: Model, real: Real) {
    count("createJob");
    const args = {
      prompt: `prompt ${this.promptVariant}`,
      durationSec: this.durationSec,
      idempotencyKey: this.key,
    };
    const request = `${args.prompt}|${args.durationSec}`;
    for (let delivery = 0; delivery < (this.duplicate ? 2 : 1); delivery++) {
      if (delivery === 1) count("duplicate createJob", true);
      const call = as(real, this.user).mutation(api.jobs.createJob, args);
      const mu = model.users[this.user];
      const previous =
        this.key === undefined
          ? -1
          : model.jobs.findIndex((j) => j.owner === this.user && j.key === this.key);
      if (mu.deleted) {
        await expectRefusal(call, "FORBIDDEN");
      } else if (!mu.signedUp) {
        await expectRefusal(call, "NOT_FOUND");
      } else if (previous >= 0 && model.jobs[previous].request !== request) {
        await expectRefusal(call, "CONFLICT");
      } else if (previous >= 0) {
        expect(await call).toBe(real.jobIds[previous]);
      } else if ((expireDue(model), available(mu)) < this.durationSec) {
        await expectRefusal(call, "INSUFFICIENT_CREDITS");
      } else {
        real.jobIds.push(await call);
        model.jobs.push({
          allocations: hold(mu, this.durationSec),
          owner: this.user,
          status: "queued",
          money: "held",
          cost: this.durationSec,
          request,
          key: this.key,
          createdAt: model.now,
          attempt: 0,
        });
      }
      await compare(model, real);
    }
  }
  toString = () =>
    `CreateJob(${this.user}, ${this.durationSec}s, p${this.promptVariant}, key=${this.key}${this.duplicate ? ", twice" : ""})`;
}

class Cancel implements Cmd {
  constructor(
    readonly job: number,
    readonly byStranger: boolean,
  ) {}
  check = (m: Readonly<Model>) => m.jobs.length > 0;
  async run(model: Model, real: Real) {
    count("cancel");
    const index = this.job % model.jobs.length;
    const job = model.jobs[index];
    const caller = this.byStranger ? (job.owner + 1) % USERS : job.owner;
    const call = as(real, caller).mutation(api.jobs.cancelJob, { jobId: real.jobIds[index] });
    if (model.users[caller].deleted) {
      await expectRefusal(call, "FORBIDDEN");
    } else if (this.byStranger) {
      await expectRefusal(call, "NOT_FOUND");
    } else if (job.status === "queued") {
      await call;
      moveJob(model, job, "canceled");
    } else if (job.status === "canceled") {
      expect(await call).toEqual({ changed: false, status: "canceled" });
    } else {
      await expectRefusal(call, "INVALID_TRANSITION");
    }
    await compare(model, real);
  }
  toString = () => `Cancel(job ${this.job}${this.byStranger ? ", by a stranger" : ""})`;
}

/** A status report (worker or operator), possibly delivered twice or after the job moved on. */
class Report implements Cmd {
  constructor(
    readonly job: number,
    readonly to: "queued" | "running" | "done" | "failed",
    readonly duplicate: boolean,
  ) {}
  check = (m: Readonly<Model>) => m.jobs.length > 0;
  async run(model: Model, real: Real) {
    count(`report ${this.to}`);
    const index = this.job % model.jobs.length;
    const job = model.jobs[index];
    for (let delivery = 0; delivery < (this.duplicate ? 2 : 1); delivery++) {
      if (delivery === 1) count("duplicate report", true);
      else if (!NEXT[job.status].includes(this.to) && job.status !== this.to) {
        count("stale report", true);
      }
      const call = real.t.mutation(internal.jobs.updateJobStatus, {
        jobId: real.jobIds[index],
        status: this.to,
        r2Url: R2,
        error: "model failure",
      });
      if (job.status === this.to) {
        expect(await call).toMatchObject({ changed: false });
      } else if (NEXT[job.status].includes(this.to)) {
        await call;
        moveJob(model, job, this.to);
      } else {
        await expectRefusal(call, "INVALID_TRANSITION");
      }
      await compare(model, real);
    }
  }
  toString = () => `Report(job ${this.job} -> ${this.to}${this.duplicate ? ", twice" : ""})`;
}

/**
 * Time passes (within a lease, past it, past the queue timeout or the video expiry) and the
 * crons run: lease sweep, queue-timeout sweep, then expiry.
 */
class TimeJump implements Cmd {
  constructor(readonly ms: number) {}
  check = () => true;
  async run(model: Model, real: Real) {
    count("timeJump + crons", true);
    // The crons run at least every CRON_STEP, as time passes in steps.
    for (let left = this.ms; left > 0; left -= CRON_STEP) {
      await cronsAfter(model, real, Math.min(left, CRON_STEP));
    }
    await compare(model, real);
  }
  toString = () => `TimeJump(${Math.round(this.ms / 60_000)} min)`;
}

/**
 * Time passes to just after the next moment a subscription has something due (a renewal or a
 * dunning charge, a period end, a grace end), as the model says, and the crons run: the
 * renewal and dunning sequences are reached in a few commands.
 */
class TimeJumpToNextDue implements Cmd {
  check = () => true;
  async run(model: Model, real: Real) {
    const moments = model.users.flatMap((u) =>
      u.subs.flatMap((sub) => [
        renewalDue(sub),
        sub.status === "active" ? sub.end : undefined,
        sub.status === "past_due" ? sub.graceEndsAt : undefined,
      ]),
    );
    const next = Math.min(
      ...moments.filter((at): at is number => at !== undefined && at > model.now),
    );
    await new TimeJump(Number.isFinite(next) ? next - model.now + 1 : DAY).run(model, real);
  }
  toString = () => "TimeJumpToNextDue()";
}

/** `ms` pass, then the crons run: lots, subscriptions, leases, queue timeouts, video expiry. */
async function cronsAfter(model: Model, real: Real, ms: number) {
  // Scheduled work more than 24.8 days ahead fires at once under (fake) timers, as Node clamps
  // such delays: let it run now, while it is not due (it is keyed by its time and does
  // nothing), so that the sweeps below are what acts at the new moment, in a known order.
  vi.advanceTimersByTime(1);
  model.now += 1;
  await finishDueScheduledFunctions(real.t);
  const early = runRenewalChecks(model, true);
  vi.advanceTimersByTime(ms - 1);
  model.now += ms - 1;
  await finishDueScheduledFunctions(real.t);
  const onTime = runRenewalChecks(model, false);
  // Lots expire on time (and roll over), then subscription periods and graces end, then
  // renewals are made (pending with TrueLayer, or failed at once while it is down).
  await real.t.mutation(internal.credits.expireDueLots, {});
  expireDue(model);
  await real.t.mutation(internal.subscriptions.sweepDue, {});
  const renewals = [...early, ...onTime, ...sweepSubscriptions(model)];
  // The renewal creation workpool creates them with TrueLayer (or fails them once its retries
  // are spent) on its own clock: the moments that takes pass for the model too.
  model.now += await drainRenewalCreations(real.t);
  await recordRenewals(model, real, renewals);
  await real.t.mutation(internal.worker.sweepExpiredLeases, {});
  await finishDueScheduledFunctions(real.t);
  for (const job of model.jobs) {
    if (job.status === "running" && job.lease !== undefined && job.lease <= model.now) {
      moveJob(model, job, job.attempt < MAX_ATTEMPTS ? "queued" : "failed");
    }
  }
  await real.t.mutation(internal.worker.sweepQueueTimeouts, {});
  await finishDueScheduledFunctions(real.t);
  for (const job of model.jobs) {
    if (job.status === "queued" && job.createdAt <= model.now - QUEUE_TIMEOUT_MS) {
      moveJob(model, job, "failed");
    }
  }
  await real.t.mutation(internal.jobs.expireOldJobs, {});
  await finishDueScheduledFunctions(real.t);
  for (const job of model.jobs) {
    if (job.status === "done" && job.expiresAt! <= model.now) moveJob(model, job, "expired");
  }
}

/**
 * The renewal payments the backend made since the last look, matched to the model's per user
 * in the order each made them: pending (TrueLayer's id is `tl-r-` + ours) or failed.
 */
async function recordRenewals(model: Model, real: Real, renewals: MadeRenewal[]) {
  const known = new Set<string>(real.paymentIds);
  const made = await real.t.run(async (ctx) =>
    (await ctx.db.query("payments").collect()).filter(
      (p) => p.purpose === "renewal" && !known.has(p._id),
    ),
  );
  expect(made).toHaveLength(renewals.length);
  const byUser = (u: number) => made.filter((p) => p.userId === real.userIds[u]);
  const taken = new Map<number, number>();
  for (const { u, sub, index, plan, gen, method } of renewals) {
    const nth = taken.get(u) ?? 0;
    taken.set(u, nth + 1);
    const row = byUser(u)[nth];
    expect(row, `renewal ${nth} of user ${u}`).toBeDefined();
    real.paymentIds.push(row._id);
    model.payments.push({
      user: u,
      plan,
      purpose: "renewal",
      sub,
      periodIndex: index,
      gen,
      trueLayerId: model.trueLayerUp ? `tl-r-${row._id}` : undefined,
      // Recorded on the payment only when on a mandate (absent: the page).
      method: method === "mandate" ? method : undefined,
      amount: PLAN_PRICE[plan],
      status: model.trueLayerUp ? "pending" : "failed",
      creditsAdded: 0,
      reclaimed: 0,
      returned: 0,
      voidedLater: 0,
      events: [],
    });
    count(model.trueLayerUp ? "renewal made" : "renewal refused by TrueLayer");
    // Made at `index`, maybe before a period close in the same cron run: the placeholder (if the
    // subscription still has it) becomes this payment.
    if (sub.renewal?.payment === -1 && sub.renewal.index === index) {
      sub.renewal.payment = model.payments.length - 1;
      if (!model.trueLayerUp) refusedRenewal(sub, sub.renewal);
    }
  }
}

/** TrueLayer starts or stops accepting new payments (the renewals the backend makes). */
class TrueLayerAvailability implements Cmd {
  constructor(readonly up: boolean) {}
  check = () => true;
  async run(model: Model, real: Real) {
    count(this.up ? "TrueLayer up" : "TrueLayer down", !this.up);
    model.trueLayerUp = this.up;
    trueLayerApi.up = this.up;
    await compare(model, real);
  }
  toString = () => `TrueLayer(${this.up ? "up" : "down"})`;
}

async function workerPost(real: Real, path: string, body: unknown) {
  const response = await real.t.fetch(path, {
    method: "POST",
    headers: { Authorization: `Bearer ${SECRET}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text === "" ? null : JSON.parse(text) };
}

function holds(model: Model, job: ModelJob, worker: string) {
  return job.status === "running" && job.worker === worker && job.lease! > model.now;
}

/** A GPU worker claims the oldest queued job over HTTP. */
class Claim implements Cmd {
  constructor(readonly worker: string) {}
  check = () => true;
  async run(model: Model, real: Real) {
    count("worker claim");
    const reply = await workerPost(real, "/worker/claim", { workerId: this.worker });
    // Never handed out: jobs past the queue timeout (left for the sweep) and jobs out of
    // attempts (failed and refunded by the claim, at most CLAIM_MAX_SKIPS of them).
    let next = -1;
    let skipped = 0;
    for (const [i, j] of model.jobs.entries()) {
      if (j.status !== "queued" || j.createdAt <= model.now - QUEUE_TIMEOUT_MS) continue;
      if (j.attempt < MAX_ATTEMPTS) {
        next = i;
        break;
      }
      if (skipped++ === CLAIM_MAX_SKIPS) break;
      moveJob(model, j, "failed");
    }
    if (next < 0) {
      expect(reply.status).toBe(204);
    } else {
      expect(reply.status).toBe(200);
      expect(reply.body.jobId).toBe(real.jobIds[next]);
      const job = model.jobs[next];
      moveJob(model, job, "running");
      job.worker = this.worker;
      job.lease = model.now + LEASE_MS;
      job.attempt++;
      expect(reply.body.attempt).toBe(job.attempt);
    }
    await compare(model, real);
  }
  toString = () => `Claim(${this.worker})`;
}

/** A worker's heartbeat, completion or failure for some job: maybe stale, maybe repeated. */
class WorkerReport implements Cmd {
  constructor(
    readonly job: number,
    readonly worker: string,
    readonly kind: "heartbeat" | "complete" | "fail" | "failRetryable",
    readonly duplicate: boolean,
  ) {}
  check = (m: Readonly<Model>) => m.jobs.length > 0;
  async run(model: Model, real: Real) {
    count(`worker ${this.kind}`);
    const index = this.job % model.jobs.length;
    const job = model.jobs[index];
    const jobId = real.jobIds[index];
    for (let delivery = 0; delivery < (this.duplicate ? 2 : 1); delivery++) {
      if (delivery === 1) count("duplicate worker report", true);
      else if (!holds(model, job, this.worker)) count("stale worker report", true);
      const held = holds(model, job, this.worker);
      if (this.kind === "heartbeat") {
        const reply = await workerPost(real, "/worker/jobs/heartbeat", {
          jobId,
          workerId: this.worker,
          progress: 50,
        });
        expect(reply.status).toBe(held ? 200 : 409);
        if (held) job.lease = model.now + LEASE_MS;
      } else if (this.kind === "complete") {
        const reply = await workerPost(real, "/worker/jobs/complete", {
          jobId,
          workerId: this.worker,
          r2Url: R2,
        });
        if (job.status === "done" && job.worker === this.worker) {
          expect(reply).toMatchObject({ status: 200, body: { changed: false } });
        } else {
          expect(reply.status).toBe(held ? 200 : 409);
          if (held) moveJob(model, job, "done", this.worker);
        }
      } else {
        const retryable = this.kind === "failRetryable";
        const reply = await workerPost(real, "/worker/jobs/fail", {
          jobId,
          workerId: this.worker,
          error: "CUDA OOM",
          retryable,
        });
        if (job.status === "failed" && job.worker === this.worker) {
          expect(reply).toMatchObject({ status: 200, body: { changed: false } });
        } else {
          expect(reply.status).toBe(held ? 200 : 409);
          if (held) {
            if (retryable && job.attempt < MAX_ATTEMPTS) moveJob(model, job, "queued");
            else moveJob(model, job, "failed", this.worker);
          }
        }
      }
      await compare(model, real);
    }
  }
  toString = () =>
    `${this.kind}(job ${this.job}, ${this.worker}${this.duplicate ? ", twice" : ""})`;
}

/** The user cancels (at the period end) or resumes their subscription. */
class CancelOrResume implements Cmd {
  constructor(
    readonly user: number,
    readonly cancel: boolean,
  ) {}
  check = () => true;
  async run(model: Model, real: Real) {
    count(this.cancel ? "cancel subscription" : "resume subscription");
    const mu = model.users[this.user];
    const call = as(real, this.user).mutation(
      this.cancel ? api.subscriptions.cancel : api.subscriptions.resume,
      {},
    );
    const live = liveSub(mu);
    if (mu.deleted) {
      await expectRefusal(call, "FORBIDDEN");
    } else if (!mu.signedUp) {
      await expectRefusal(call, "NOT_FOUND");
    } else if (live === undefined) {
      await expectRefusal(call, "INVALID_TRANSITION");
    } else {
      await call;
      live.cancel = this.cancel;
      if (this.cancel) dropPendingRenewal(model, live);
      const due = renewalDue(live);
      if (!this.cancel && due !== undefined) {
        const runAt = Math.max(model.now, due);
        live.renewalChecks.push({
          runAt,
          end: live.end!,
          clamped: runAt - model.now > MAX_TIMER_MS,
        });
      }
    }
    await compare(model, real);
  }
  toString = () => `${this.cancel ? "Cancel" : "Resume"}(${this.user})`;
}

/** The user schedules a change to a cheaper plan (or clears it) for the period end. */
class Downgrade implements Cmd {
  constructor(
    readonly user: number,
    readonly plan: PlanName,
  ) {}
  check = () => true;
  async run(model: Model, real: Real) {
    count("downgrade");
    const mu = model.users[this.user];
    const call = as(real, this.user).mutation(api.subscriptions.changePlan, {
      planName: this.plan,
    });
    const live = liveSub(mu);
    if (mu.deleted) {
      await expectRefusal(call, "FORBIDDEN");
    } else if (!mu.signedUp) {
      await expectRefusal(call, "NOT_FOUND");
    } else if (live === undefined) {
      await expectRefusal(call, "INVALID_TRANSITION");
    } else if (
      PLAN_CREDITS[this.plan] > PLAN_CREDITS[live.plan] ||
      (live.status === "past_due" && this.plan === live.plan)
    ) {
      await expectRefusal(call, "INVALID_ARGUMENT");
    } else {
      await call;
      const pendingPlan = this.plan === live.plan ? undefined : this.plan;
      // A pending renewal was priced for the old choice: dropped, and made anew if due.
      if (pendingPlan !== live.pendingPlan) {
        live.pendingPlan = pendingPlan;
        if (dropPendingRenewal(model, live) && renewalDue(live) !== undefined) {
          live.renewalChecks.push({ runAt: model.now, end: live.end!, clamped: false });
        }
      } else {
        count("changePlan to what is scheduled already: nothing changes");
      }
    }
    await compare(model, real);
  }
  toString = () => `Downgrade(${this.user}, ${this.plan})`;
}

/** A mutation that throws after writing (a crash midway) must leave no partial write. */
class CrashMidway implements Cmd {
  constructor(readonly user: number) {}
  check = (m: Readonly<Model>) => m.users[this.user].signedUp;
  async run(model: Model, real: Real) {
    count("crash midway", true);
    const userId = real.userIds[this.user]!;
    const crash = real.t.run(async (ctx) => {
      const user = (await ctx.db.get("users", userId))!;
      if (user.credits >= 5) {
        await createJobInTransaction(ctx, user, { prompt: "doomed", durationSec: 5 });
      }
      await ctx.db.patch("users", userId, { credits: user.credits + 1_000 });
      throw new Error("injected crash");
    });
    await expect(crash).rejects.toThrow("injected crash");
    await compare(model, real);
  }
  toString = () => `CrashMidway(${this.user})`;
}

/**
 * The user's mandate is authorised (what the mandate lifecycle's webhook leaves; until it is
 * merged, inserted as such): from their next renewal on, renewals up to `maxAmount` are charged
 * on it. A newer mandate replaces an older one.
 */
class SetUpMandate implements Cmd {
  constructor(
    readonly user: number,
    readonly maxAmount: number,
  ) {}
  check = (m: Readonly<Model>) => m.users[this.user].signedUp && !m.users[this.user].deleted;
  async run(model: Model, real: Real) {
    count("mandate authorised");
    const userId = real.userIds[this.user]!;
    await real.t.run(async (ctx) => {
      await ctx.db.insert("mandates", {
        userId,
        trueLayerMandateId: `tl-mandate-${++eventCounter}`,
        type: "commercial",
        status: "authorized",
        currency: "GBP",
        maxAmount: this.maxAmount,
        periodicLimit: 1_000_000,
        createdAt: Date.now(),
        authorizedAt: Date.now(),
      });
    });
    model.users[this.user].mandate = { maxAmount: this.maxAmount };
    await compare(model, real);
  }
  toString = () => `SetUpMandate(${this.user}, max ${this.maxAmount})`;
}

/** The user revokes their mandate at their bank: renewals go back to the hosted page. */
class RevokeMandate implements Cmd {
  constructor(readonly user: number) {}
  check = (m: Readonly<Model>) => m.users[this.user].mandate !== undefined;
  async run(model: Model, real: Real) {
    count("mandate revoked");
    const userId = real.userIds[this.user]!;
    await real.t.run(async (ctx) => {
      const newest = await ctx.db
        .query("mandates")
        .withIndex("by_userId", (q) => q.eq("userId", userId))
        .order("desc")
        .first();
      await ctx.db.patch("mandates", newest!._id, { status: "revoked", endedAt: Date.now() });
    });
    model.users[this.user].mandate = undefined;
    await compare(model, real);
  }
  toString = () => `RevokeMandate(${this.user})`;
}

/** A signed-in user starts a plan checkout (TrueLayer's id attached as the action would). */
class Checkout implements Cmd {
  constructor(
    readonly user: number,
    readonly plan: PlanName,
  ) {}
  check = () => true;
  async run(model: Model, real: Real) {
    count("checkout");
    const mu = model.users[this.user];
    const call = real.t.mutation(internal.payments.startCheckout, {
      clerkId: `user_${this.user}`,
      planName: this.plan,
      currency: "GBP",
    });
    const purpose = mu.signedUp && !mu.deleted ? checkoutPurpose(mu, this.plan) : null;
    if (!mu.signedUp) {
      await expectRefusal(call, "NOT_FOUND");
    } else if (mu.deleted) {
      await expectRefusal(call, "FORBIDDEN");
    } else if (purpose === null) {
      await expectRefusal(call, "INVALID_ARGUMENT");
    } else {
      const { paymentId, amount } = await call;
      const trueLayerId = `tl-${real.paymentIds.length}`;
      await real.t.mutation(internal.payments.attachTrueLayerPayment, {
        paymentId,
        trueLayerPaymentId: trueLayerId,
        resourceToken: "rt",
      });
      expect(amount, "priced at checkout").toBe(purpose.amount);
      real.paymentIds.push(paymentId);
      const last = mu.subs[mu.subs.length - 1];
      const sub =
        purpose.purpose === "start"
          ? last?.status === "incomplete"
            ? Object.assign(last, { plan: this.plan })
            : newSub(mu, this.plan)
          : purpose.sub;
      model.payments.push({
        user: this.user,
        plan: this.plan,
        purpose: purpose.purpose,
        sub,
        periodIndex: purpose.purpose === "start" ? undefined : purpose.periodIndex,
        gen: purpose.purpose === "start" ? undefined : purpose.gen,
        fromPlan: purpose.purpose === "upgrade" ? purpose.fromPlan : undefined,
        quoted: purpose.purpose === "upgrade" ? purpose.quoted : undefined,
        trueLayerId,
        amount: purpose.amount,
        status: "pending",
        creditsAdded: 0,
        reclaimed: 0,
        returned: 0,
        voidedLater: 0,
        events: [],
      });
    }
    await compare(model, real);
  }
  toString = () => `Checkout(${this.user}, ${this.plan})`;
}

/** A signed TrueLayer payment webhook: maybe repeated, maybe a replay of an earlier event id. */
class PaymentEvent implements Cmd {
  constructor(
    readonly payment: number,
    readonly kind: "payment_executed" | "payment_settled" | "payment_failed",
    readonly duplicate: boolean,
    readonly replay: boolean,
    /**
     * The newest pending payment TrueLayer knows (what a paying user does next), or the oldest
     * (a bank payment arriving late, out of order), if any.
     */
    readonly pick: "any" | "newest" | "oldest" | "mandate" = "any",
  ) {}
  check = (m: Readonly<Model>) => m.payments.length > 0;
  async run(model: Model, real: Real) {
    count(this.kind);
    // `mandate`: the newest pending charge on a mandate (the payer's bank answers it).
    const isPending = (mp: ModelPayment) =>
      mp.status === "pending" &&
      mp.trueLayerId !== undefined &&
      (this.pick !== "mandate" || mp.method === "mandate");
    const pending =
      this.pick === "oldest"
        ? model.payments.findIndex(isPending)
        : model.payments.findLastIndex(isPending);
    const index =
      this.pick !== "any" && pending >= 0 ? pending : this.payment % model.payments.length;
    if (
      this.pick === "oldest" &&
      pending >= 0 &&
      pending !== model.payments.findLastIndex(isPending)
    ) {
      count("a payment paid out of order", true);
    }
    const mp = model.payments[index];
    const replayed = this.replay && mp.events.length > 0 ? mp.events[0] : undefined;
    const eventId = replayed ?? `evt-${++eventCounter}`;
    if (replayed) count("replayed webhook", true);
    for (let delivery = 0; delivery < (this.duplicate ? 2 : 1); delivery++) {
      if (delivery === 1) count("duplicate webhook", true);
      const response = await deliverTrueLayer(real.t, trueLayerKey, {
        type: this.kind,
        event_version: 1,
        event_id: eventId,
        payment_id: mp.trueLayerId ?? `tl-unknown-${index}`,
        ...(this.kind === "payment_failed" ? { failure_reason: "authorization_failed" } : {}),
      });
      expect(response.status).toBe(200);
      if (delivery === 0 && replayed === undefined) {
        mp.events.push(eventId);
        if (mp.trueLayerId === undefined) {
          // TrueLayer never had this payment: its events name no payment of ours.
        } else if (this.kind !== "payment_failed" && mp.status !== "succeeded") {
          mp.status = "succeeded";
          paymentSucceeded(model, mp, index);
        } else if (this.kind === "payment_failed" && mp.status === "pending") {
          mp.status = "failed";
          const renewal = mp.sub.renewal;
          if (renewal?.payment === index && renewal.status === "pending") {
            renewal.status = "failed";
            if (mp.method === "mandate") {
              // The payer's bank refused the charge: the next dunning charge is a new attempt.
              count("charge on the mandate refused");
              Object.assign(renewal, {
                refusals: (renewal.refusals ?? 0) + 1,
                attempts: undefined,
                retryAt: undefined,
              });
            }
          }
        }
      }
      await compare(model, real);
    }
  }
  toString = () =>
    `${this.kind}(${this.pick === "any" ? `payment ${this.payment}` : `${this.pick} pending payment`}${this.duplicate ? ", twice" : ""}${this.replay ? ", replayed id" : ""})`;
}

/** Lots in spending order: soonest expiry first, never last; promotional before paid; oldest. */
function bySpendingOrder(lots: ModelLot[]): ModelLot[] {
  const paidFor = ["purchase", "period", "upgrade", "rollover"];
  const paid = (lot: ModelLot) => (paidFor.includes(lot.source) ? 1 : 0);
  return [...lots].sort(
    (a, b) =>
      (a.expiresAt ?? Infinity) - (b.expiresAt ?? Infinity) ||
      paid(a) - paid(b) ||
      a.created - b.created ||
      a.seq - b.seq,
  );
}

/**
 * A full refund executed: its credits come back from every lot of the payment (its own, the
 * rollover, returned and reversal lots that came out of it): available ones voided now, held
 * ones marked to void on release; a renewal awaiting its period no longer counts as paid.
 */
function refundExecuted(model: Model, mp: ModelPayment, index: number) {
  expireDue(model);
  const mu = model.users[mp.user];
  const due = mp.creditsAdded;
  const lots = mu.lots.filter((l) => l.payment === index);
  mp.refund = "executed";
  mp.voidedLater = 0;
  if (lots.length === 0) {
    const renewal = mp.sub.renewal;
    if (renewal?.payment === index && paidNext(model, mp.sub) === mp) {
      count("refund of a renewal paid ahead");
      renewal.status = "failed";
      mp.reclaimed = due;
    } else {
      mp.reclaimed = Math.min(available(mu), due);
      removeAvailable(mu, mp.reclaimed);
    }
    return;
  }
  if (lots.length > 1) count("refund reaching lots that came out of its payment");
  let reclaimed = 0;
  for (const lot of bySpendingOrder(lots)) {
    const take = Math.min(due - reclaimed, availableIn(lot));
    lot.remaining -= take;
    settleStatus(lot);
    reclaimed += take;
  }
  let pending = 0;
  for (const lot of lots) {
    const mark = Math.min(due - reclaimed - pending, lot.held - lot.voidMark);
    if (mark <= 0) continue;
    const nothingLeft = lot.status === "active" && lot.remaining === lot.held;
    lot.voidMark += mark;
    if (nothingLeft && lot.held === lot.voidMark) lot.status = "voided";
    pending += mark;
  }
  mp.reclaimed = reclaimed;
}

/**
 * An executed refund the bank returned: the held credits it still waited for are unmarked and
 * what it voided comes back as an adjustment lot of the payment; a renewal that was awaiting its
 * period counts as paid again (by the quote rule if the subscription moved on).
 */
function refundReturned(model: Model, mp: ModelPayment, index: number) {
  const mu = model.users[mp.user];
  const lots = mu.lots.filter((l) => l.payment === index);
  for (const lot of lots) lot.voidMark = 0;
  const back = mp.reclaimed + mp.voidedLater;
  mp.refund = "failed";
  mp.returned++;
  mp.reclaimed = 0;
  mp.voidedLater = 0;
  if (lots.length === 0 && mp.purpose === "renewal") {
    count("returned refund of a renewal that had no lot");
    const sub = mp.sub;
    const renewal = sub.renewal?.payment === index ? sub.renewal : undefined;
    if (renewal?.status === "failed" && renewal.index === sub.index + 1) {
      renewal.status = "paid";
    } else if (renewal?.status !== "paid") {
      paymentSucceeded(model, mp, index);
    }
    return;
  }
  if (back === 0) return;
  const latest = Math.max(0, ...lots.map((l) => l.expiresAt ?? 0));
  newLot(mu, model, {
    source: "adjustment",
    granted: back,
    expiresAt: latest > model.now ? latest : model.now + 7 * DAY,
    payment: index,
  });
}

/**
 * An operator refunds a payment in full; TrueLayer reports the refund executed, failed, or
 * executed and then returned by the bank (maybe each twice).
 */
class Refund implements Cmd {
  constructor(
    readonly payment: number,
    readonly outcome: "refund_executed" | "refund_failed" | "refund_returned",
    readonly duplicate: boolean,
  ) {}
  check = (m: Readonly<Model>) => m.payments.length > 0;
  async run(model: Model, real: Real) {
    count(this.outcome);
    // Half the time, a payment whose earlier refund the bank returned (if there is one).
    const returned = model.payments.findIndex((mp) => mp.returned > 0 && mp.refund === "failed");
    const index =
      this.payment % 2 === 0 && returned >= 0 ? returned : this.payment % model.payments.length;
    const mp = model.payments[index];
    const paymentId = real.paymentIds[index];
    const start = real.t.mutation(internal.payments.startRefund, { paymentId });
    if (mp.status !== "succeeded" || mp.refund === "pending" || mp.refund === "executed") {
      await expectRefusal(start, "INVALID_TRANSITION");
      await compare(model, real);
      return;
    }
    if (mp.returned > 0) count("refund after a bank-returned refund");
    const { refundId: ourRefundId } = await start;
    const refundId = `rf-${++eventCounter}`;
    await real.t.mutation(internal.payments.attachRefund, {
      refundId: ourRefundId,
      trueLayerRefundId: refundId,
    });
    mp.refund = "pending";
    await compare(model, real);
    const steps =
      this.outcome === "refund_returned"
        ? (["refund_executed", "refund_failed"] as const)
        : [this.outcome];
    for (const type of steps) {
      const eventId = `evt-${++eventCounter}`;
      for (let delivery = 0; delivery < (this.duplicate ? 2 : 1); delivery++) {
        if (delivery === 1) count("duplicate webhook", true);
        const response = await deliverTrueLayer(real.t, trueLayerKey, {
          type,
          event_version: 1,
          event_id: eventId,
          payment_id: mp.trueLayerId,
          refund_id: refundId,
          ...(type === "refund_failed" ? { failure_reason: "insufficient_funds" } : {}),
        });
        expect(response.status).toBe(200);
        if (delivery === 0) {
          if (type === "refund_executed") refundExecuted(model, mp, index);
          else if ((mp.refund as ModelPayment["refund"]) === "executed") {
            refundReturned(model, mp, index);
          } else mp.refund = "failed";
        }
        await compare(model, real);
      }
    }
  }
  toString = () =>
    `Refund(payment ${this.payment} -> ${this.outcome}${this.duplicate ? ", twice" : ""})`;
}

/** A signed Clerk webhook (Svix): user created, updated or deleted; maybe delivered twice. */
class ClerkEvent implements Cmd {
  constructor(
    readonly user: number,
    readonly type: "user.created" | "user.updated" | "user.deleted",
    readonly duplicate: boolean,
  ) {}
  check = () => true;
  async run(model: Model, real: Real) {
    count(`clerk ${this.type}`);
    const clerkId = `user_${this.user}`;
    const msgId = `msg_${++eventCounter}`;
    const body = JSON.stringify({
      type: this.type,
      data: {
        id: clerkId,
        primary_email_address_id: "idn_1",
        email_addresses: [{ id: "idn_1", email_address: `${clerkId}@example.com` }],
      },
    });
    const now = new Date();
    const signature = new Webhook(CLERK_SECRET).sign(msgId, now, body);
    for (let delivery = 0; delivery < (this.duplicate ? 2 : 1); delivery++) {
      if (delivery === 1) count("duplicate webhook", true);
      const response = await real.t.fetch("/clerk/webhook", {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          "svix-id": msgId,
          "svix-timestamp": String(Math.floor(now.getTime() / 1000)),
          "svix-signature": signature,
        },
        body,
      });
      expect(response.status).toBe(200);
      const mu = model.users[this.user];
      if (delivery === 0) {
        if (this.type === "user.deleted") {
          if (!mu.signedUp) {
            // A deletion before the user exists leaves a tombstone row with no credits.
            mu.signedUp = true;
            real.userIds[this.user] = (await real.t.run(async (ctx) =>
              ctx.db
                .query("users")
                .withIndex("by_clerkId", (q) => q.eq("clerkId", clerkId))
                .unique(),
            ))!._id;
          }
          if (!mu.deleted) {
            // The subscription ends at once: no renewal; a paid one becomes a lot.
            const last = mu.subs[mu.subs.length - 1];
            if (last !== undefined && last.status !== "canceled") {
              count("deleted user's subscription canceled");
              creditPaidRenewal(model, mu, last);
              dropPendingRenewal(model, last);
              endSub(mu, last, { cancel: true });
            }
          }
          mu.deleted = true;
        } else if (!mu.deleted && !mu.signedUp) {
          mu.signedUp = true;
          newLot(mu, model, { source: "welcome", granted: SIGN_UP_CREDITS });
          real.userIds[this.user] = (await real.t.run(async (ctx) =>
            ctx.db
              .query("users")
              .withIndex("by_clerkId", (q) => q.eq("clerkId", clerkId))
              .unique(),
          ))!._id;
        }
      }
      await compare(model, real);
    }
  }
  toString = () => `Clerk(${this.type} ${this.user}${this.duplicate ? ", twice" : ""})`;
}

const user = fc.integer({ min: 0, max: USERS - 1 });
const reports = fc
  .tuple(
    fc.nat(),
    fc.constantFrom("queued", "running", "done", "failed") as fc.Arbitrary<Report["to"]>,
    fc.boolean(),
  )
  .map(([j, to, dup]) => new Report(j, to, dup));
const workerReports = fc
  .tuple(
    fc.nat(),
    fc.constantFrom(...WORKERS),
    fc.constantFrom("heartbeat", "complete", "fail", "failRetryable") as fc.Arbitrary<
      WorkerReport["kind"]
    >,
    fc.boolean(),
  )
  .map(([j, w, kind, dup]) => new WorkerReport(j, w, kind, dup));
const commands = [
  reports,
  reports,
  user.map((u) => new SignUp(u)),
  fc
    .tuple(user, fc.constantFrom<PlanName>("starter", "creator", "studio"))
    .map(([u, p]) => new ChangePlan(u, p)),
  fc
    .tuple(
      user,
      fc.integer({ min: -40, max: 40 }).filter((n) => n !== 0),
    )
    .map(([u, c]) => new Grant(u, c)),
  fc
    .tuple(
      user,
      fc.constantFrom<5 | 10 | 15>(5, 10, 15),
      fc.integer({ min: 0, max: 1 }),
      fc.option(fc.constantFrom("k1", "k2"), { nil: undefined }),
      fc.boolean(),
    )
    .map(([u, d, p, k, dup]) => new CreateJob(u, d, p, k, dup)),
  fc.tuple(fc.nat(), fc.boolean()).map(([j, s]) => new Cancel(j, s)),
  fc
    .tuple(
      fc.nat(),
      fc.constantFrom("queued", "running", "done", "failed") as fc.Arbitrary<Report["to"]>,
      fc.boolean(),
    )
    .map(([j, to, dup]) => new Report(j, to, dup)),
  fc
    .oneof(
      fc.integer({ min: 1, max: LEASE_MS }),
      fc.integer({ min: LEASE_MS, max: 30 * HOUR }),
      // Into a renewal's 3 days or a grace's 7 days.
      fc.integer({ min: 2 * DAY, max: 9 * DAY }),
      // Across a month: plan lots expire, with and without jobs holding their credits.
      fc.integer({ min: 25 * DAY, max: 35 * DAY }),
    )
    .map((ms) => new TimeJump(ms)),
  // A month passes again: subscriptions renew (or not) more often.
  fc.integer({ min: 25 * DAY, max: 35 * DAY }).map((ms) => new TimeJump(ms)),
  fc.boolean().map((up) => new TrueLayerAvailability(up)),
  fc.constantFrom(...WORKERS).map((w) => new Claim(w)),
  fc.constantFrom(...WORKERS).map((w) => new Claim(w)),
  workerReports,
  workerReports,
  workerReports,
  fc
    .tuple(user, fc.constantFrom<PlanName>("starter", "creator", "studio"))
    .map(([u, p]) => new Checkout(u, p)),
  fc
    .tuple(
      fc.nat(),
      fc.constantFrom("payment_executed", "payment_settled", "payment_failed") as fc.Arbitrary<
        PaymentEvent["kind"]
      >,
      fc.boolean(),
      fc.boolean(),
    )
    .map(([p, kind, dup, replay]) => new PaymentEvent(p, kind, dup, replay)),
  // The user pays what they were asked to (a checkout, a renewal), now or later.
  fc.nat().map((p) => new PaymentEvent(p, "payment_executed", false, false, "newest")),
  fc.nat().map((p) => new PaymentEvent(p, "payment_executed", false, false, "newest")),
  // A late bank payment: the oldest checkout or renewal still pending is paid now.
  fc.nat().map((p) => new PaymentEvent(p, "payment_executed", false, false, "oldest")),
  // Upgrades (and their checkouts left pending while others are paid, or a comp comes).
  fc
    .tuple(user, fc.constantFrom<PlanName>("creator", "studio"))
    .map(([u, p]) => new Checkout(u, p)),
  fc
    .tuple(
      fc.nat(),
      fc.constantFrom("refund_executed", "refund_failed", "refund_returned") as fc.Arbitrary<
        Refund["outcome"]
      >,
      fc.boolean(),
    )
    .map(([p, outcome, dup]) => new Refund(p, outcome, dup)),
  fc
    .tuple(
      user,
      fc.constantFrom("user.created", "user.updated", "user.deleted") as fc.Arbitrary<
        ClerkEvent["type"]
      >,
      fc.boolean(),
    )
    .map(([u, type, dup]) => new ClerkEvent(u, type, dup)),
  user.map((u) => new CrashMidway(u)),
  fc.tuple(user, fc.boolean()).map(([u, cancel]) => new CancelOrResume(u, cancel)),
  // Mandates: set up (covering every plan, or only starter), revoked; their charges refused or
  // executed by the payer's bank, retried in the grace (a time jump of 2–9 days reaches them).
  fc.tuple(user, fc.constantFrom(6000, 2000)).map(([u, max]) => new SetUpMandate(u, max)),
  fc.tuple(user, fc.constant(6000)).map(([u, max]) => new SetUpMandate(u, max)),
  user.map((u) => new RevokeMandate(u)),
  fc.nat().map((p) => new PaymentEvent(p, "payment_failed", false, false, "mandate")),
  fc.nat().map((p) => new PaymentEvent(p, "payment_failed", false, false, "mandate")),
  fc.nat().map((p) => new PaymentEvent(p, "payment_failed", false, false, "mandate")),
  fc.nat().map((p) => new PaymentEvent(p, "payment_executed", false, false, "mandate")),
  fc.constant(new TimeJumpToNextDue()),
  fc.constant(new TimeJumpToNextDue()),
  // Days pass in the grace: from one dunning charge to the next (1, 3, 5 days after the end).
  fc.integer({ min: 1 * DAY, max: 3 * DAY }).map((ms) => new TimeJump(ms)),
  fc.integer({ min: 1 * DAY, max: 3 * DAY }).map((ms) => new TimeJump(ms)),
  fc
    .tuple(user, fc.constantFrom<PlanName>("starter", "creator", "studio"))
    .map(([u, p]) => new Downgrade(u, p)),
];

afterEach(() => {
  vi.useRealTimers();
});

afterAll(() => {
  console.log(
    `model-based: ${stats.sequences} sequences, ${stats.commands} commands, ${stats.faults} faults injected`,
    JSON.stringify(stats.byCommand),
  );
});

const runs = Number(process.env.MODEL_RUNS ?? 150);

test(`model and database agree over ${runs} random command sequences`, { timeout: 0 }, async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.commands(commands, {
        maxCommands: 30,
        size: "max",
        replayPath: process.env.MODEL_REPLAY,
      }),
      async (cmds) => {
        stats.sequences++;
        vi.useFakeTimers({ now: START });
        vi.stubEnv("WORKER_SECRET", SECRET);
        vi.stubEnv("CLERK_WEBHOOK_SECRET", CLERK_SECRET);
        // Renewals of users with an authorised mandate are charged on it (VRP: 3 days ahead).
        vi.stubEnv("TRUELAYER_MANDATE_TYPE", "commercial");
        stubTrueLayerEnv(merchantKey);
        trueLayerApi.up = true;
        trueLayerNetwork(trueLayerKey, {
          // Renewals: created while TrueLayer is up, with an id the model can name.
          [PAYMENTS_URL]: (request) => {
            if (!trueLayerApi.up) return jsonResponse(503, { title: "Service Unavailable" });
            const body = JSON.parse(request.body) as { metadata: { cineweave_payment_id: string } };
            return jsonResponse(201, {
              id: `tl-r-${body.metadata.cineweave_payment_id}`,
              resource_token: "rt",
              status: "authorization_required",
            });
          },
        });
        try {
          const t = await setup();
          const model: Model = {
            users: Array.from({ length: USERS }, () => ({
              signedUp: false,
              deleted: false,
              lots: [],
              subs: [],
              plan: "starter" as const,
            })),
            jobs: [],
            payments: [],
            now: START,
            trueLayerUp: true,
          };
          const real: Real = { t, userIds: [], jobIds: [], paymentIds: [] };
          // Two users start signed up; the third signs up (or not) within the sequence. The
          // first has an authorised mandate: their renewals are charged on it, until revoked.
          for (const u of [0, 1]) await new SignUp(u).run(model, real);
          await new SetUpMandate(0, PLAN_PRICE.studio).run(model, real);
          await fc.asyncModelRun(() => ({ model, real }), cmds);
        } finally {
          vi.useRealTimers();
          vi.unstubAllEnvs();
          vi.unstubAllGlobals();
        }
      },
    ),
    {
      numRuns: runs,
      seed: process.env.MODEL_SEED === undefined ? undefined : Number(process.env.MODEL_SEED),
      path: process.env.MODEL_PATH,
      endOnFailure: process.env.MODEL_PATH === undefined ? false : true,
    },
  );
});
