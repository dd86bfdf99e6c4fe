import type { Doc, Id } from "../_generated/dataModel";
import { internal } from "../_generated/api";
import type { MutationCtx, QueryCtx } from "../_generated/server";
import { appError, rateLimitedError } from "../lib/errors";
import { HttpError } from "../lib/http";
import { IMAGE_UPLOADS_UNUSED_MAX } from "../lib/rateLimits";
import { IMAGE_CONTENT_TYPES, IMAGE_MAX_BYTES, ORPHAN_IMAGE_RETENTION_MS } from "./images";

/**
 * Uploading input images: every upload is its user's from the moment it is stored, checked as it
 * is read, and a user holds at most `IMAGE_UPLOADS_UNUSED_MAX` uploads no job has used yet.
 *
 * `jobs:generateImageUploadUrl` records an `imageUploads` row for the caller with a random,
 * single-use token and answers the URL of the upload route (`POST /images/upload?token=…` on the
 * deployment's HTTP actions site), valid for `IMAGE_UPLOAD_URL_TTL_MS`. The route (HTTP action,
 * convex/imageUploads.ts) finds the row by its token before reading anything, then reads the body
 * as it arrives: a PNG, JPEG or WebP (the declared Content-Type and the file's own signature
 * must agree) of 1 byte to `IMAGE_MAX_BYTES`, refused as soon as it is known not to be; only then
 * is the file stored and the row completed with it. Browsers get the same flow as Convex storage
 * upload URLs (POST the file with its Content-Type, read `{ storageId }`).
 *
 * A row counts as unused until a job uses its file (`usedAt`): a URL never used goes when it
 * expires (`expireUploadUrl`), an uploaded file no job uses goes with the orphan sweep
 * (model/images.ts), a used one with its last job.
 */

/** How long an upload URL can be used (once). */
export const IMAGE_UPLOAD_URL_TTL_MS = 60 * 60 * 1000;
/** The upload route's path on the HTTP actions site (convex/http.ts). */
export const IMAGE_UPLOAD_PATH = "/images/upload";

function randomToken(): string {
  const bytes = new Uint8Array(32);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** When an unused row stops counting: its URL expires, or the orphan sweep takes its file. */
function unusedUntil(row: Doc<"imageUploads">): number {
  return row.storageId === undefined
    ? (row.uploadUrlExpiresAt ?? row.createdAt)
    : row.createdAt + ORPHAN_IMAGE_RETENTION_MS + 60 * 60 * 1000;
}

/**
 * A single-use upload URL for `user` (RATE_LIMITED, with `retryAfter` until the first slot
 * frees, when the user already holds `IMAGE_UPLOADS_UNUSED_MAX` unused uploads and URLs).
 */
export async function grantImageUpload(
  ctx: MutationCtx,
  user: Doc<"users">,
  now: number,
): Promise<string> {
  const site = process.env.CONVEX_SITE_URL;
  if (site === undefined || site === "") {
    throw appError("UNAVAILABLE", "The deployment's HTTP actions URL is unknown.");
  }
  const unused = await ctx.db
    .query("imageUploads")
    .withIndex("by_userId_and_usedAt", (q) => q.eq("userId", user._id).eq("usedAt", undefined))
    .take(IMAGE_UPLOADS_UNUSED_MAX);
  if (unused.length >= IMAGE_UPLOADS_UNUSED_MAX) {
    const freesAt = Math.min(...unused.map(unusedUntil));
    throw rateLimitedError(
      `You have ${unused.length} uploaded images (or upload URLs) no job uses yet: use them in a job, or wait.`,
      Math.max(1000, freesAt - now),
    );
  }
  const uploadToken = randomToken();
  const uploadUrlExpiresAt = now + IMAGE_UPLOAD_URL_TTL_MS;
  const uploadId = await ctx.db.insert("imageUploads", {
    userId: user._id,
    uploadToken,
    uploadUrlExpiresAt,
    createdAt: now,
  });
  await ctx.scheduler.runAt(uploadUrlExpiresAt, internal.imageUploads.expireUploadUrl, {
    uploadId,
  });
  return `${site.replace(/\/+$/, "")}${IMAGE_UPLOAD_PATH}?token=${uploadToken}`;
}

/** The row an upload URL's token names, while it waits for its file (else null). */
export async function pendingUpload(
  ctx: QueryCtx,
  token: string,
): Promise<Doc<"imageUploads"> | null> {
  if (!/^[0-9a-f]{64}$/.test(token)) {
    return null;
  }
  const row = await ctx.db
    .query("imageUploads")
    .withIndex("by_uploadToken", (q) => q.eq("uploadToken", token))
    .unique();
  return row !== null && row.storageId === undefined ? row : null;
}

/**
 * Completes the token's row with the stored file (the token is spent), or, when the URL was
 * spent or expired meanwhile, deletes the file and returns null: nothing unattributed stays.
 */
export async function recordImageUpload(
  ctx: MutationCtx,
  upload: { token: string; storageId: Id<"_storage">; contentType: string; size: number },
  now: number,
): Promise<Id<"_storage"> | null> {
  const row = await pendingUpload(ctx, upload.token);
  if (row === null || (row.uploadUrlExpiresAt ?? 0) <= now) {
    await ctx.storage.delete(upload.storageId);
    return null;
  }
  await ctx.db.patch("imageUploads", row._id, {
    storageId: upload.storageId,
    contentType: upload.contentType,
    size: upload.size,
    uploadToken: undefined,
  });
  return upload.storageId;
}

/** An upload URL that expired unused: its row goes (a used one is left alone). */
export async function expireUploadUrl(
  ctx: MutationCtx,
  uploadId: Id<"imageUploads">,
): Promise<void> {
  const row = await ctx.db.get("imageUploads", uploadId);
  if (row !== null && row.storageId === undefined) {
    await ctx.db.delete("imageUploads", uploadId);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading the upload (in the HTTP action)

const SIGNATURES: Record<(typeof IMAGE_CONTENT_TYPES)[number], (head: Uint8Array) => boolean> = {
  "image/png": (h) => [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((b, i) => h[i] === b),
  "image/jpeg": (h) => h[0] === 0xff && h[1] === 0xd8 && h[2] === 0xff,
  "image/webp": (h) =>
    String.fromCharCode(...h.subarray(0, 4)) === "RIFF" &&
    String.fromCharCode(...h.subarray(8, 12)) === "WEBP",
};

/**
 * The request's image, read as it arrives: its declared type must be PNG, JPEG or WebP (415),
 * its size 1 byte to `IMAGE_MAX_BYTES` (413 as soon as more arrives, or when Content-Length says
 * so; 400 when empty), and its first bytes the signature of that type (415).
 */
export async function readImage(request: Request): Promise<{ bytes: Blob; contentType: string }> {
  const contentType = (request.headers.get("Content-Type") ?? "")
    .split(";")[0]
    .trim()
    .toLowerCase();
  if (!(contentType in SIGNATURES)) {
    throw new HttpError(
      "UNSUPPORTED_MEDIA_TYPE",
      "Upload a PNG, JPEG or WebP image with its Content-Type (image/png, image/jpeg, image/webp).",
    );
  }
  const tooLarge = () =>
    new HttpError("PAYLOAD_TOO_LARGE", `The image must be at most ${IMAGE_MAX_BYTES} bytes.`);
  if (Number(request.headers.get("Content-Length") ?? 0) > IMAGE_MAX_BYTES) {
    throw tooLarge();
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body !== null) {
    const reader = request.body.getReader();
    for (let read = await reader.read(); !read.done; read = await reader.read()) {
      size += read.value.byteLength;
      if (size > IMAGE_MAX_BYTES) {
        await reader.cancel();
        throw tooLarge();
      }
      chunks.push(read.value);
    }
  }
  if (size === 0) {
    throw new HttpError("INVALID_ARGUMENT", "The image is empty.");
  }
  const head = new Uint8Array(12);
  let filled = 0;
  for (const chunk of chunks) {
    if (filled >= head.length) break;
    const part = chunk.subarray(0, head.length - filled);
    head.set(part, filled);
    filled += part.length;
  }
  if (!SIGNATURES[contentType as keyof typeof SIGNATURES](head)) {
    throw new HttpError(
      "UNSUPPORTED_MEDIA_TYPE",
      `The file is not a ${contentType} image (its first bytes say otherwise).`,
    );
  }
  return { bytes: new Blob(chunks as BlobPart[], { type: contentType }), contentType };
}
