import { v } from "convex/values";
import { internal } from "./_generated/api";
import { httpAction, internalQuery } from "./_generated/server";
import { HttpError, jsonResponse, withJsonErrors } from "./lib/http";
import { internalMutation } from "./lib/functions";
import * as ImageUploads from "./model/imageUploads";

/**
 * The input-image upload route and its internal steps (model/imageUploads.ts). The URL comes from
 * `jobs:generateImageUploadUrl`; its token is checked before the body is read.
 */

/** When the token's upload URL expires, while it waits for its file (else null). */
export const uploadUrlExpiry = internalQuery({
  args: { token: v.string() },
  returns: v.union(v.number(), v.null()),
  handler: async (ctx, { token }) => {
    const row = await ImageUploads.pendingUpload(ctx, token);
    return row?.uploadUrlExpiresAt ?? null;
  },
});

/** Completes the token's upload with the stored file; null (file deleted) if the URL was spent. */
export const recordUpload = internalMutation({
  args: {
    token: v.string(),
    storageId: v.id("_storage"),
    contentType: v.string(),
    size: v.number(),
  },
  returns: v.union(v.id("_storage"), v.null()),
  handler: async (ctx, args) => await ImageUploads.recordImageUpload(ctx, args, Date.now()),
});

/** Scheduled at a URL's expiry: the row of a URL never used goes. */
export const expireUploadUrl = internalMutation({
  args: { uploadId: v.id("imageUploads") },
  returns: v.null(),
  handler: async (ctx, { uploadId }) => {
    await ImageUploads.expireUploadUrl(ctx, uploadId);
    return null;
  },
});

const SPENT = "This upload URL is unknown, expired or already used: ask for a new one.";

/**
 * `POST /images/upload?token=…` with the image as the body and its Content-Type → 200
 * `{ storageId }`. Unknown, spent or expired token: 401 before the body is read; not a PNG,
 * JPEG or WebP: 415; over 10 MiB: 413; empty: 400. Nothing is stored unless all pass.
 */
export const upload = httpAction((ctx, request) =>
  withJsonErrors(async () => {
    const token = new URL(request.url).searchParams.get("token") ?? "";
    const expiresAt = await ctx.runQuery(internal.imageUploads.uploadUrlExpiry, { token });
    if (expiresAt === null || expiresAt <= Date.now()) {
      throw new HttpError("UNAUTHENTICATED", SPENT);
    }
    const image = await ImageUploads.readImage(request);
    const storageId = await ctx.storage.store(image.bytes);
    const recorded = await ctx.runMutation(internal.imageUploads.recordUpload, {
      token,
      storageId,
      contentType: image.contentType,
      size: image.bytes.size,
    });
    if (recorded === null) {
      throw new HttpError("UNAUTHENTICATED", SPENT);
    }
    return jsonResponse(200, { storageId: recorded });
  }),
);
