import type { Doc, Id } from "../_generated/dataModel";
import type { MutationCtx } from "../_generated/server";
import { enforceRateLimit } from "../lib/rateLimits";
import { appError } from "../lib/errors";
import { hasControlCharacters, isBlank, isWellFormed } from "../lib/text";
import { URL_MAX_LENGTH, isPublicHttpsUrl } from "../lib/urls";
import { reserveJobCredits } from "./credits";
import { useImage } from "./images";

/** A job request: its limits, its price, its checks, and its creation (reserving the price). */

export const JOB_DURATIONS = [5, 10, 15] as const;
export const PROMPT_MAX_LENGTH = 2000;
export const IDEMPOTENCY_KEY_MAX_LENGTH = 128;
export const SEED_MAX = 4_294_967_295;
export const CFG_MIN = 1;
export const CFG_MAX = 20;

/** The price of a job: one credit per second of video, on every plan. */
export function jobCost(durationSec: number): number {
  return durationSec;
}

export type JobInput = {
  prompt: string;
  imageUrl?: string;
  /** An image the caller uploaded to file storage (`jobs:generateImageUploadUrl`). */
  imageStorageId?: Id<"_storage">;
  durationSec: number;
  seed?: number;
  cfg?: number;
  idempotencyKey?: string;
};

function invalid(field: string, rule: string): never {
  throw appError("INVALID_ARGUMENT", `${field} ${rule}.`);
}

/** Checks every field of a job request; returns it normalised (prompt trimmed). */
export function validateJobInput(input: JobInput): JobInput {
  const prompt = input.prompt.trim();
  if (prompt.length === 0) invalid("prompt", "must not be empty");
  if (prompt.length > PROMPT_MAX_LENGTH) {
    invalid("prompt", `must be at most ${PROMPT_MAX_LENGTH} characters`);
  }
  // Zero-width spaces, bidi overrides and the like alone are as empty as spaces.
  if (isBlank(prompt)) invalid("prompt", "must not be empty (it has no visible characters)");
  if (!isWellFormed(prompt))
    invalid("prompt", "must be valid Unicode (it has an unpaired surrogate)");
  if (hasControlCharacters(prompt)) {
    invalid("prompt", "must not contain control characters (tabs and line breaks are fine)");
  }
  if (input.imageUrl !== undefined && !isPublicHttpsUrl(input.imageUrl)) {
    invalid(
      "imageUrl",
      `must be a public https:// URL of at most ${URL_MAX_LENGTH} characters, without credentials`,
    );
  }
  if (input.imageUrl !== undefined && input.imageStorageId !== undefined) {
    invalid("imageStorageId", "and imageUrl cannot both be given: pass one image");
  }
  if (!(JOB_DURATIONS as readonly number[]).includes(input.durationSec)) {
    invalid("durationSec", "must be 5, 10 or 15");
  }
  if (
    input.seed !== undefined &&
    !(Number.isInteger(input.seed) && input.seed >= 0 && input.seed <= SEED_MAX)
  ) {
    invalid("seed", `must be a whole number from 0 to ${SEED_MAX}`);
  }
  if (
    input.cfg !== undefined &&
    !(Number.isFinite(input.cfg) && input.cfg >= CFG_MIN && input.cfg <= CFG_MAX)
  ) {
    invalid("cfg", `must be a number from ${CFG_MIN} to ${CFG_MAX}`);
  }
  if (
    input.idempotencyKey !== undefined &&
    (input.idempotencyKey.length === 0 || input.idempotencyKey.length > IDEMPOTENCY_KEY_MAX_LENGTH)
  ) {
    invalid("idempotencyKey", `must be 1 to ${IDEMPOTENCY_KEY_MAX_LENGTH} characters`);
  }
  if (
    input.idempotencyKey !== undefined &&
    (!isWellFormed(input.idempotencyKey) || /[\p{Cc}]/u.test(input.idempotencyKey))
  ) {
    invalid("idempotencyKey", "must be valid Unicode without control characters");
  }
  return { ...input, prompt };
}

function sameRequest(job: Doc<"jobs">, input: JobInput): boolean {
  return (
    job.prompt === input.prompt &&
    job.imageUrl === input.imageUrl &&
    job.imageStorageId === input.imageStorageId &&
    job.durationSec === input.durationSec &&
    job.seed === input.seed &&
    job.cfg === input.cfg
  );
}

/**
 * Validates, reserves the job's price and inserts it as `queued`, all in the caller's
 * transaction. With an idempotency key already used by this user: the same request returns
 * the first job and charges nothing; a different request is a CONFLICT. The key is only taken
 * when the job commits, so a refused attempt leaves it free.
 */
export async function createJob(
  ctx: MutationCtx,
  user: Doc<"users">,
  rawInput: JobInput,
): Promise<{ jobId: Id<"jobs">; created: boolean }> {
  const input = validateJobInput(rawInput);
  if (input.idempotencyKey !== undefined) {
    const previous = await ctx.db
      .query("jobs")
      .withIndex("by_userId_and_idempotencyKey", (q) =>
        q.eq("userId", user._id).eq("idempotencyKey", input.idempotencyKey),
      )
      .unique();
    if (previous !== null) {
      if (!sameRequest(previous, input)) {
        throw appError(
          "CONFLICT",
          "idempotencyKey was already used for a different job request; use a new key.",
        );
      }
      return { jobId: previous._id, created: false };
    }
  }
  // After the idempotent replay above: a retry of a created job is never refused.
  await enforceRateLimit(
    ctx,
    "createJob",
    user._id,
    "Too many jobs started in a short time; try again shortly.",
  );
  if (input.imageStorageId !== undefined) {
    await useImage(ctx, user, input.imageStorageId, Date.now());
  }
  const cost = jobCost(input.durationSec);
  const jobId = await ctx.db.insert("jobs", {
    userId: user._id,
    prompt: input.prompt,
    imageUrl: input.imageUrl,
    imageStorageId: input.imageStorageId,
    durationSec: input.durationSec,
    seed: input.seed,
    cfg: input.cfg,
    idempotencyKey: input.idempotencyKey,
    creditsUsed: cost,
    status: "queued",
    creditStatus: "held",
    createdAt: Date.now(),
  });
  // INSUFFICIENT_CREDITS here rolls the insert back with everything else.
  await reserveJobCredits(ctx, (await ctx.db.get("jobs", jobId))!);
  return { jobId, created: true };
}
