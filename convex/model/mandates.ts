import { internal } from "../_generated/api";
import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { appError } from "../lib/errors";
import type { MandateType } from "../lib/trueLayerMandates";
import { PLAN_CATALOG, findPlan } from "./plans";
import { requireActiveUserByClerkId } from "./users";

/**
 * TrueLayer payment mandates ("bank on file"): a user authorises one on TrueLayer's page and
 * renewals are then paid on it without them. Every status change goes through
 * `transitionMandate`, checked against `MANDATE_TRANSITIONS` (TrueLayer's lifecycle, plus our
 * `creating` while TrueLayer has not answered the creation call):
 *
 *   creating ──(created)──> authorization_required ──> authorizing ──> authorized ──> revoked
 *       │                          │                       │              │
 *       └──────────────────────────┴───────────(failed)────┴──────────────┴──> failed
 *
 * `revoked` and `failed` are final ("ended"): a late event for an ended mandate changes nothing.
 * TrueLayer only revokes authorised mandates, so a `mandate_revoked` that overtook its
 * `mandate_authorized` (or our creation call's answer) ends a mandate not authorised here yet.
 * A user has at most one mandate that has not ended, and it is always their newest: a new one is
 * only inserted after the previous one ended.
 */

export type Mandate = Doc<"mandates">;
export type MandateStatus = Mandate["status"];

export const MANDATE_TRANSITIONS: Record<MandateStatus, readonly MandateStatus[]> = {
  // → authorized / revoked / failed: a webhook beat the creating action to storing TrueLayer's id.
  creating: ["authorization_required", "authorized", "revoked", "failed"],
  authorization_required: ["authorizing", "authorized", "revoked", "failed"],
  authorizing: ["authorized", "revoked", "failed"],
  // → failed: TrueLayer fails an authorised mandate when it expires.
  authorized: ["revoked", "failed"],
  revoked: [],
  failed: [],
};

/**
 * Why we ended a mandate ourselves before it was authorised (`failureReason`): if TrueLayer's
 * `mandate_authorized` still arrives for it, the consent is revoked with TrueLayer.
 */
export const ABANDONED = {
  superseded: "abandoned: superseded by a new set-up",
  canceled: "abandoned: canceled by the user",
  deleted: "abandoned: the account was deleted",
} as const;
export const wasAbandoned = (mandate: Mandate) =>
  (Object.values(ABANDONED) as string[]).includes(mandate.failureReason ?? "");

export const isEnded = (mandate: Mandate) =>
  mandate.status === "revoked" || mandate.status === "failed";

/**
 * How long a mandate awaiting authorisation is handed out again by `setUpAutoRenewal` rather
 * than replaced. TrueLayer's resource token is short-lived (its examples mark it "15 min
 * expiry"); reusing it within 10 minutes leaves the page at least 5.
 */
export const MANDATE_REUSE_MS = 10 * 60 * 1000;

/**
 * The monthly periodic limit, in the dearest plan's prices: one renewal a month, plus room for a
 * dunning retry of the previous period's renewal succeeding in the same month of the consent.
 */
export const PERIODIC_LIMIT_PRICES = 2;

/** The user's newest mandate, whatever its status (what `subscriptions.get` shows), or null. */
export async function latestMandate(ctx: QueryCtx, userId: Id<"users">): Promise<Mandate | null> {
  return await ctx.db
    .query("mandates")
    .withIndex("by_userId", (q) => q.eq("userId", userId))
    .order("desc")
    .first();
}

/** What the front end sees of a mandate (`mandates.mandateView`). */
export function mandateViewOf(mandate: Mandate | null) {
  return mandate === null
    ? null
    : {
        status: mandate.status,
        type: mandate.type,
        maxAmount: mandate.maxAmount,
        createdAt: mandate.createdAt,
      };
}

/** The user's mandate that has not ended (being created, awaiting authorisation or authorised). */
export async function currentMandate(ctx: QueryCtx, userId: Id<"users">): Promise<Mandate | null> {
  const latest = await latestMandate(ctx, userId);
  return latest === null || isEnded(latest) ? null : latest;
}

/** The user's authorised mandate, the one renewals may be paid on, or null (pay on the page). */
export async function authorizedMandate(
  ctx: QueryCtx,
  userId: Id<"users">,
): Promise<(Mandate & { status: "authorized"; trueLayerMandateId: string }) | null> {
  const mandate = await currentMandate(ctx, userId);
  return mandate?.status === "authorized" && mandate.trueLayerMandateId !== undefined
    ? (mandate as Mandate & { status: "authorized"; trueLayerMandateId: string })
    : null;
}

type MandatePatch = Partial<
  Pick<
    Mandate,
    "trueLayerMandateId" | "resourceToken" | "authorizedAt" | "endedAt" | "failureReason"
  >
>;

/**
 * The one status change: `to` must be allowed from the mandate's status (a bug otherwise: the
 * whole transaction is refused; webhooks check `canTransition` first). The resource token (for
 * the authorisation page) is dropped once authorised or ended; `authorizedAt` / `endedAt` stamped.
 */
export async function transitionMandate(
  ctx: MutationCtx,
  mandate: Mandate,
  to: MandateStatus,
  patch: MandatePatch = {},
): Promise<Mandate> {
  if (!canTransition(mandate, to)) {
    throw new Error(`Mandate ${mandate._id}: ${mandate.status} → ${to} is not a transition.`);
  }
  const ending = to === "revoked" || to === "failed";
  const full: MandatePatch & { status: MandateStatus } = {
    ...patch,
    status: to,
    ...(ending ? { resourceToken: undefined, endedAt: patch.endedAt ?? Date.now() } : {}),
    ...(to === "authorized"
      ? { resourceToken: undefined, authorizedAt: patch.authorizedAt ?? Date.now() }
      : {}),
  };
  await ctx.db.patch("mandates", mandate._id, full);
  return { ...mandate, ...full };
}

export const canTransition = (mandate: Mandate, to: MandateStatus) =>
  MANDATE_TRANSITIONS[mandate.status].includes(to);

// ---------------------------------------------------------------------------------------------
// Setting up and cancelling

/** The caller's mandate awaiting authorisation that `setUpAutoRenewal` may hand out again. */
export async function findReusableMandate(
  ctx: QueryCtx,
  clerkId: string,
  type: MandateType,
  now: number,
) {
  const user = await requireActiveUserByClerkId(ctx, clerkId);
  const mandate = await currentMandate(ctx, user._id);
  if (
    mandate?.status !== "authorization_required" ||
    mandate.type !== type ||
    mandate.trueLayerMandateId === undefined ||
    mandate.resourceToken === undefined ||
    mandate.createdAt <= now - MANDATE_REUSE_MS
  ) {
    return null;
  }
  return {
    mandateId: mandate._id,
    trueLayerMandateId: mandate.trueLayerMandateId,
    resourceToken: mandate.resourceToken,
    type: mandate.type,
    maxAmount: mandate.maxAmount,
    periodicLimit: mandate.periodicLimit,
    currency: mandate.currency,
  };
}

/** The dearest seeded plan's monthly price: the most one renewal can cost. */
async function dearestPrice(ctx: QueryCtx): Promise<number> {
  let dearest = 0;
  for (const { name } of PLAN_CATALOG) {
    dearest = Math.max(dearest, (await findPlan(ctx, name))?.price ?? 0);
  }
  if (dearest === 0) {
    throw appError("NOT_FOUND", "Plans are not seeded yet: run plans:seedPlans.");
  }
  return dearest;
}

/**
 * Records a new mandate (`creating`) for the caller, with constraints covering the dearest plan:
 * refused (CONFLICT) while one is authorised; one still being created or awaiting authorisation
 * (abandoned: its page expired, or a concurrent set-up) is ended first, so at most one is live.
 */
export async function startMandate(
  ctx: MutationCtx,
  clerkId: string,
  type: MandateType,
  currency: string,
) {
  const user = await requireActiveUserByClerkId(ctx, clerkId);
  const maxAmount = await dearestPrice(ctx);
  const current = await currentMandate(ctx, user._id);
  if (current?.status === "authorized") {
    throw appError(
      "CONFLICT",
      "Auto-renewal is already set up; cancel it first to set it up with another account.",
    );
  }
  if (current !== null) {
    await transitionMandate(ctx, current, "failed", {
      failureReason: ABANDONED.superseded,
    });
  }
  const mandateId = await ctx.db.insert("mandates", {
    userId: user._id,
    type,
    status: "creating",
    currency,
    maxAmount,
    periodicLimit: maxAmount * PERIODIC_LIMIT_PRICES,
    createdAt: Date.now(),
  });
  return {
    mandateId,
    type,
    maxAmount,
    periodicLimit: maxAmount * PERIODIC_LIMIT_PRICES,
    currency,
    email: user.email,
  };
}

/**
 * TrueLayer created the mandate: its id and resource token are stored, and it awaits the user's
 * authorisation. False when the mandate ended meanwhile (replaced by a concurrent set-up).
 */
export async function attachTrueLayerMandate(
  ctx: MutationCtx,
  mandateId: Id<"mandates">,
  trueLayerMandateId: string,
  resourceToken: string,
): Promise<boolean> {
  const mandate = await ctx.db.get("mandates", mandateId);
  if (mandate === null || isEnded(mandate)) return false;
  if (
    mandate.trueLayerMandateId !== undefined &&
    mandate.trueLayerMandateId !== trueLayerMandateId
  ) {
    throw appError("CONFLICT", "Mandate is already linked to another TrueLayer mandate.");
  }
  if (mandate.status === "creating") {
    await transitionMandate(ctx, mandate, "authorization_required", {
      trueLayerMandateId,
      resourceToken,
    });
  }
  return true;
}

/** TrueLayer refused (or could not be reached for) the creation: the mandate fails. */
export async function failMandateCreation(
  ctx: MutationCtx,
  mandateId: Id<"mandates">,
  reason: string,
): Promise<void> {
  const mandate = await ctx.db.get("mandates", mandateId);
  if (mandate !== null && canTransition(mandate, "failed")) {
    await transitionMandate(ctx, mandate, "failed", { failureReason: reason.slice(0, 500) });
  }
}

/**
 * `cancelAutoRenewal`'s first step: an authorised mandate is returned to be revoked with TrueLayer
 * (it stays authorised until TrueLayer confirms); one not authorised yet cannot be charged, so it
 * simply ends here (if the user still completes TrueLayer's page, its `mandate_authorized` revokes
 * it). Null: nothing (left) to revoke.
 */
export async function beginCancel(ctx: MutationCtx, clerkId: string) {
  const user = await requireActiveUserByClerkId(ctx, clerkId);
  const mandate = await currentMandate(ctx, user._id);
  if (mandate === null) return null;
  if (mandate.status === "authorized" && mandate.trueLayerMandateId !== undefined) {
    return {
      mandateId: mandate._id,
      trueLayerMandateId: mandate.trueLayerMandateId,
      type: mandate.type,
    };
  }
  await transitionMandate(ctx, mandate, "failed", { failureReason: ABANDONED.canceled });
  return null;
}

/** TrueLayer confirmed our revocation: the mandate is revoked (once; a later webhook is ignored). */
export async function markRevokedByClient(
  ctx: MutationCtx,
  mandateId: Id<"mandates">,
): Promise<void> {
  const mandate = await ctx.db.get("mandates", mandateId);
  if (mandate !== null && canTransition(mandate, "revoked")) {
    await transitionMandate(ctx, mandate, "revoked", { failureReason: "client" });
  }
}

/**
 * Revokes the mandate with TrueLayer from a scheduled action (`mandates.revokeInBackground`,
 * retried with backoff): for consents nobody is there to revoke interactively.
 */
export async function revokeInBackground(ctx: MutationCtx, mandate: Mandate): Promise<void> {
  if (mandate.trueLayerMandateId === undefined) return;
  await ctx.scheduler.runAfter(0, internal.mandates.revokeInBackground, {
    mandateId: mandate._id,
    trueLayerMandateId: mandate.trueLayerMandateId,
    type: mandate.type,
    attempt: 1,
  });
}

/**
 * A deleted account (Clerk `user.deleted`) keeps no consent to charge it: an authorised mandate
 * is revoked with TrueLayer in the background (`revoked` once TrueLayer accepts), one not
 * authorised yet ends here.
 */
export async function endMandateForDeletedUser(
  ctx: MutationCtx,
  userId: Id<"users">,
): Promise<void> {
  const mandate = await currentMandate(ctx, userId);
  if (mandate === null) return;
  if (mandate.status === "authorized") {
    await revokeInBackground(ctx, mandate);
  } else {
    await transitionMandate(ctx, mandate, "failed", { failureReason: ABANDONED.deleted });
  }
}
