/**
 * Media: input images in Convex file storage (convex-test's storage) and videos in a private
 * bucket, against a real S3-compatible server (s3rver on 127.0.0.1, files in a temporary
 * folder, started in beforeAll and closed in afterAll): presigned PUT, HEAD checks at
 * completion, presigned GET until `expiresAt`, deletion at expiry and its retries; orphan
 * image uploads deleted after the retention window.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import crons from "../convex/crons";
import { createServer } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { R2_REQUEST_TIMEOUT_MS, headObject, presign, type R2Config } from "../convex/lib/r2";
import { EXPIRE_BATCH_SIZE, VIDEO_TTL_MS } from "../convex/model/jobs";
import { UPLOAD_LANDING_MARGIN_MS } from "../convex/model/videoDeletions";
import {
  IMAGE_MAX_BYTES,
  ORPHAN_IMAGE_BATCH_SIZE,
  ORPHAN_IMAGE_RETENTION_MS,
} from "../convex/model/images";
import { snapshotDatabase } from "./support/hardening";
import {
  bearerScheme,
  expectHttpRefusedWithoutWrites,
  type HttpRouteRow,
} from "./support/httpRoutes";
import { checkInvariants } from "./support/invariants";
import { startS3, TEST_BUCKET, type S3Server } from "./support/s3";
import {
  expectCode,
  finishDueScheduledFunctions,
  setup,
  signUp,
  storeFile,
  type TestConvex,
} from "./support/setup";
import { IMAGE_UPLOAD_URL_TTL_MS } from "../convex/model/imageUploads";

const SECRET = "media-worker-secret";
const PNG = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]);
const VIDEO = Uint8Array.from(Array.from({ length: 4096 }, (_, i) => (i * 7) % 256));

type Reply = { status: number; body: any }; // eslint-disable-line @typescript-eslint/no-explicit-any

async function post(t: TestConvex, path: string, body: unknown): Promise<Reply> {
  const response = await t.fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${SECRET}` },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text === "" ? null : JSON.parse(text) };
}

const fileExists = (t: TestConvex, id: Id<"_storage">) =>
  t.run(async (ctx) => (await ctx.db.system.get("_storage", id)) !== null);
const jobDoc = (t: TestConvex, jobId: Id<"jobs">) => t.run((ctx) => ctx.db.get("jobs", jobId));
const deletionRows = (t: TestConvex) => t.run((ctx) => ctx.db.query("videoDeletions").collect());
/**
 * Runs what was scheduled, including the R2 deletion workpool's runs: its loop starts work on
 * 100 ms segments of the real clock, so this lets a few segments pass.
 */
async function runScheduled(t: TestConvex) {
  for (let i = 0; i < 4; i++) {
    await t.finishAllScheduledFunctions(() => {});
    await new Promise((resolve) => setTimeout(resolve, 120));
  }
  await t.finishAllScheduledFunctions(() => {});
}

let s3: S3Server;
let bucket: R2Config;
beforeAll(async () => {
  s3 = await startS3();
  bucket = {
    endpoint: s3.endpoint,
    bucket: TEST_BUCKET,
    accessKeyId: s3.env.R2_ACCESS_KEY_ID,
    secretAccessKey: s3.env.R2_SECRET_ACCESS_KEY,
  };
});
afterAll(async () => {
  await s3?.close();
});
beforeEach(() => {
  vi.stubEnv("WORKER_SECRET", SECRET);
});
afterEach(() => {
  vi.unstubAllEnvs();
});

let buckets = 0;
/** R2 configured, with a bucket of this test's own. */
async function bucketMode() {
  const name = `videos-${++buckets}`;
  await s3.createBucket(name);
  for (const [env, value] of Object.entries(s3.env)) vi.stubEnv(env, value);
  vi.stubEnv("R2_BUCKET", name);
  bucket = { ...bucket, bucket: name };
}

// ---------------------------------------------------------------------------------------------

describe("input images in file storage", () => {
  test("the owner's PNG: recorded as theirs, a URL in the claim, deleted when the job is done", async () => {
    const t = await setup();
    const { as, userId } = await signUp(t, "user_img");
    const url = new URL(await as.mutation(api.jobs.generateImageUploadUrl, {}));
    const uploaded = await t.fetch(url.pathname + url.search, {
      method: "POST",
      headers: { "Content-Type": "image/png" },
      body: PNG,
    });
    const { storageId: imageStorageId } = (await uploaded.json()) as {
      storageId: Id<"_storage">;
    };
    const jobId = await as.mutation(api.jobs.createJob, {
      prompt: "animate this",
      imageStorageId,
      durationSec: 5,
    });
    expect(await as.query(api.jobs.getJob, { jobId })).toMatchObject({ imageStorageId });
    const uploads = await t.run((ctx) => ctx.db.query("imageUploads").collect());
    expect(uploads).toMatchObject([{ storageId: imageStorageId, userId }]);

    const claim = await post(t, "/worker/claim", { workerId: "w1" });
    expect(claim.status).toBe(200);
    const expectedUrl = await t.run((ctx) => ctx.storage.getUrl(imageStorageId));
    expect(claim.body.imageUrl).toBe(expectedUrl);
    expect(claim.body.upload).toBeUndefined(); // development mode

    const done = await post(t, "/worker/jobs/complete", {
      jobId,
      workerId: "w1",
      attempt: 1,
      r2Url: "https://videos.example.com/a.mp4",
    });
    expect(done.status).toBe(200);
    expect(await fileExists(t, imageStorageId)).toBe(false);
    expect(await t.run((ctx) => ctx.db.query("imageUploads").collect())).toEqual([]);
    await checkInvariants(t);
  });

  test("an image two jobs use stays until the last one is final; cancel and failure release it", async () => {
    const t = await setup();
    const { as } = await signUp(t, "user_img2");
    const imageStorageId = await storeFile(t, PNG, "image/jpeg");
    const first = await as.mutation(api.jobs.createJob, {
      prompt: "a",
      imageStorageId,
      durationSec: 5,
    });
    const second = await as.mutation(api.jobs.createJob, {
      prompt: "b",
      imageStorageId,
      durationSec: 5,
    });
    await as.mutation(api.jobs.cancelJob, { jobId: first });
    expect(await fileExists(t, imageStorageId)).toBe(true);
    await t.mutation(internal.jobs.updateJobStatus, { jobId: second, status: "failed" });
    expect(await fileExists(t, imageStorageId)).toBe(false);
    // A deleted image cannot be used again.
    await expectCode(
      as.mutation(api.jobs.createJob, { prompt: "c", imageStorageId, durationSec: 5 }),
      "NOT_FOUND",
    );
  });

  test("another user's image is NOT_FOUND; non-images and oversized files are refused; nothing written", async () => {
    const t = await setup();
    const owner = await signUp(t, "user_a");
    const stranger = await signUp(t, "user_b");
    const image = await storeFile(t, PNG, "image/webp");
    await owner.as.mutation(api.jobs.createJob, {
      prompt: "mine",
      imageStorageId: image,
      durationSec: 5,
    });
    const text = await storeFile(t, new TextEncoder().encode("hello"), "text/plain");
    const untyped = await storeFile(t, PNG, null);
    const huge = await storeFile(t, new Uint8Array(IMAGE_MAX_BYTES + 1), "image/png");
    const empty = await storeFile(t, new Uint8Array(0), "image/png");
    const cases: Array<[Promise<unknown>, string]> = [];
    const before = await snapshotDatabase(t);
    const attempt = (as: typeof owner.as, imageStorageId: Id<"_storage">) =>
      as.mutation(api.jobs.createJob, { prompt: "x", imageStorageId, durationSec: 5 });
    cases.push([attempt(stranger.as, image), "NOT_FOUND"]);
    for (const id of [text, untyped, huge, empty])
      cases.push([attempt(owner.as, id), "INVALID_ARGUMENT"]);
    cases.push([
      owner.as.mutation(api.jobs.createJob, {
        prompt: "x",
        imageStorageId: image,
        imageUrl: "https://img.example.com/a.png",
        durationSec: 5,
      }),
      "INVALID_ARGUMENT",
    ]);
    for (const [promise, code] of cases) await expectCode(promise, code);
    expect(await snapshotDatabase(t)).toStrictEqual(before);
  });
});

describe("image uploads through the upload route", () => {
  afterEach(() => {
    vi.useRealTimers();
  });
  const upload = (url: string, body: Uint8Array<ArrayBuffer> | string, contentType: string) => {
    const { pathname, search } = new URL(url);
    return t_.fetch(pathname + search, {
      method: "POST",
      headers: { "Content-Type": contentType, Origin: "https://app.example.com" },
      body,
    });
  };
  let t_: TestConvex;
  const rows = () => t_.run((ctx) => ctx.db.query("imageUploads").collect());

  test("the upload is its user's from the start, checked as read, single use; only its user can use it", async () => {
    const t = (t_ = await setup());
    const owner = await signUp(t, "user_up");
    const stranger = await signUp(t, "user_up_other");
    const url = await owner.as.mutation(api.jobs.generateImageUploadUrl, {});
    expect(url).toMatch(
      /^https:\/\/cineweave-test\.convex\.site\/images\/upload\?token=[0-9a-f]{64}$/,
    );
    expect(await rows()).toMatchObject([{ userId: owner.userId, uploadToken: expect.any(String) }]);

    const response = await upload(url, PNG, "image/png");
    expect(response.status).toBe(200);
    expect(response.headers.get("Access-Control-Allow-Origin")).toBe("https://app.example.com");
    const { storageId } = (await response.json()) as { storageId: Id<"_storage"> };
    const [row] = await rows();
    expect(row).toMatchObject({ userId: owner.userId, storageId, contentType: "image/png" });
    expect(row.size).toBe(PNG.length);
    expect(row.uploadToken).toBeUndefined();
    expect(row.usedAt).toBeUndefined();

    // The URL is spent: a second upload to it is refused and stores nothing.
    const before = await snapshotDatabase(t);
    const again = await upload(url, PNG, "image/png");
    expect(again.status).toBe(401);
    expect(await again.json()).toMatchObject({ code: "UNAUTHENTICATED" });
    expect(await snapshotDatabase(t)).toStrictEqual(before);

    await expectCode(
      stranger.as.mutation(api.jobs.createJob, {
        prompt: "x",
        imageStorageId: storageId,
        durationSec: 5,
      }),
      "NOT_FOUND",
    );
    await owner.as.mutation(api.jobs.createJob, {
      prompt: "x",
      imageStorageId: storageId,
      durationSec: 5,
    });
    expect((await rows())[0].usedAt).toEqual(expect.any(Number));
  });

  test("refused uploads store nothing: wrong type, a file that is not what it says, empty, too large", async () => {
    const t = (t_ = await setup());
    const { as } = await signUp(t, "user_up_bad");
    const url = await as.mutation(api.jobs.generateImageUploadUrl, {});
    const before = await snapshotDatabase(t);
    const cases: Array<[Uint8Array<ArrayBuffer> | string, string, number]> = [
      [PNG, "text/plain", 415],
      [PNG, "image/svg+xml", 415],
      [new TextEncoder().encode("<html>not a png</html>"), "image/png", 415],
      [PNG, "image/jpeg", 415],
      [new Uint8Array(0), "image/png", 400],
      [new Uint8Array(IMAGE_MAX_BYTES + 1).fill(0x89, 0, 1), "image/png", 413],
    ];
    for (const [body, type, status] of cases) {
      expect((await upload(url, body, type)).status).toBe(status);
    }
    expect(await snapshotDatabase(t)).toStrictEqual(before);
    // The URL was not spent by the refusals.
    expect((await upload(url, PNG, "image/png")).status).toBe(200);
  });

  test("an URL unused for an hour expires: refused, and its record goes", async () => {
    vi.useFakeTimers({ now: Date.parse("2026-05-01T10:00:00Z") });
    const t = (t_ = await setup());
    const { as } = await signUp(t, "user_up_late");
    const url = await as.mutation(api.jobs.generateImageUploadUrl, {});
    vi.advanceTimersByTime(IMAGE_UPLOAD_URL_TTL_MS);
    expect((await upload(url, PNG, "image/png")).status).toBe(401);
    await finishDueScheduledFunctions(t);
    expect(await rows()).toEqual([]);
    // A file stored while its URL was spent meanwhile is deleted, not left unattributed.
    const stored = await storeFile(t, PNG, "image/png");
    const token = new URL(url).searchParams.get("token")!;
    expect(
      await t.mutation(internal.imageUploads.recordUpload, {
        token,
        storageId: stored,
        contentType: "image/png",
        size: PNG.length,
      }),
    ).toBeNull();
    expect(await fileExists(t, stored)).toBe(false);
  });

  test("browsers' CORS preflight is answered, and runs nothing", async () => {
    const t = (t_ = await setup());
    const before = await snapshotDatabase(t);
    const response = await t.fetch("/images/upload?token=x", {
      method: "OPTIONS",
      headers: {
        Origin: "https://app.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
      },
    });
    expect(response.status).toBeLessThan(300);
    expect(response.headers.get("Access-Control-Allow-Origin")).toBe("https://app.example.com");
    expect(response.headers.get("Access-Control-Allow-Methods")).toContain("POST");
    expect(response.headers.get("Access-Control-Allow-Headers")?.toLowerCase()).toContain(
      "content-type",
    );
    expect(await snapshotDatabase(t)).toStrictEqual(before);
  });
});

// ---------------------------------------------------------------------------------------------

describe("orphan image uploads", () => {
  const START = Date.parse("2026-05-01T10:00:00Z");
  const MINUTE = 60_000;
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["Date"], now: START });
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  const sweep = (t: TestConvex, args: { createdBefore?: number; after?: number } = {}) =>
    t.mutation(internal.media.deleteOrphanImages, args);
  const uploadRecords = (t: TestConvex) => t.run((ctx) => ctx.db.query("imageUploads").collect());

  test("an upload no job used is deleted once older than the window, not before; the hourly cron runs it", async () => {
    const t = await setup();
    const { userId } = await signUp(t, "user_orphan");
    const orphan = await storeFile(t, PNG, "image/png");
    // A file with an ownership record but no unfinished job (its job gone): an orphan too.
    const recorded = await storeFile(t, PNG, "image/png");
    await t.run((ctx) =>
      ctx.db.insert("imageUploads", { storageId: recorded, userId, createdAt: Date.now() }),
    );
    vi.setSystemTime(START + 2 * 60 * MINUTE);
    const younger = await storeFile(t, PNG, "image/webp");

    vi.setSystemTime(START + ORPHAN_IMAGE_RETENTION_MS - MINUTE);
    expect(await sweep(t)).toEqual({ deleted: 0, kept: 0, more: false });
    expect(await fileExists(t, orphan)).toBe(true);
    expect(await fileExists(t, recorded)).toBe(true);

    vi.setSystemTime(START + ORPHAN_IMAGE_RETENTION_MS + MINUTE);
    expect(await sweep(t)).toEqual({ deleted: 2, kept: 0, more: false });
    expect(await fileExists(t, orphan)).toBe(false);
    expect(await fileExists(t, recorded)).toBe(false);
    expect(await uploadRecords(t)).toEqual([]);
    expect(await fileExists(t, younger)).toBe(true);
    // Run again (a duplicate run): nothing more goes.
    expect(await sweep(t)).toEqual({ deleted: 0, kept: 0, more: false });
    expect(await fileExists(t, younger)).toBe(true);

    const registered = (
      crons as unknown as { crons: Record<string, { name: string; schedule: unknown }> }
    ).crons;
    expect(registered["delete orphan image uploads"]).toMatchObject({
      name: "media:deleteOrphanImages",
      schedule: { type: "hourly", minuteUTC: 47 },
    });
  });

  test("an upload a queued or running job uses is kept past the window, and goes when its job is final", async () => {
    const t = await setup();
    const { as } = await signUp(t, "user_inuse");
    const forQueued = await storeFile(t, PNG, "image/png");
    const forRunning = await storeFile(t, PNG, "image/jpeg");
    const running = await as.mutation(api.jobs.createJob, {
      prompt: "runs",
      imageStorageId: forRunning,
      durationSec: 5,
    });
    expect((await post(t, "/worker/claim", { workerId: "w1" })).body.jobId).toBe(running);
    const queued = await as.mutation(api.jobs.createJob, {
      prompt: "waits",
      imageStorageId: forQueued,
      durationSec: 5,
    });

    vi.setSystemTime(START + 3 * ORPHAN_IMAGE_RETENTION_MS);
    expect(await sweep(t)).toEqual({ deleted: 0, kept: 2, more: false });
    expect(await fileExists(t, forQueued)).toBe(true);
    expect(await fileExists(t, forRunning)).toBe(true);
    expect((await uploadRecords(t)).map((u) => u.storageId).sort()).toEqual(
      [forQueued, forRunning].sort(),
    );

    // The final status still releases the image (the existing path), and the sweep agrees.
    await as.mutation(api.jobs.cancelJob, { jobId: queued });
    expect(await fileExists(t, forQueued)).toBe(false);
    expect(await sweep(t)).toEqual({ deleted: 0, kept: 1, more: false });
    await t.mutation(internal.jobs.updateJobStatus, { jobId: running, status: "failed" });
    expect(await fileExists(t, forRunning)).toBe(false);
    expect(await uploadRecords(t)).toEqual([]);
    expect(await sweep(t)).toEqual({ deleted: 0, kept: 0, more: false });
    await checkInvariants(t);
  });

  test("a registered upload whose file is already gone breaks neither the sweep nor the job's release", async () => {
    const t = await setup();
    const { as } = await signUp(t, "user_gone");
    const image = await storeFile(t, PNG, "image/png");
    const jobId = await as.mutation(api.jobs.createJob, {
      prompt: "x",
      imageStorageId: image,
      durationSec: 5,
    });
    // Deleted behind the backend's back (e.g. from the dashboard).
    await t.run((ctx) => ctx.storage.delete(image));
    vi.setSystemTime(START + 2 * ORPHAN_IMAGE_RETENTION_MS);
    expect(await sweep(t)).toEqual({ deleted: 0, kept: 0, more: false });
    await as.mutation(api.jobs.cancelJob, { jobId });
    expect(await uploadRecords(t)).toEqual([]);
    expect(await sweep(t)).toEqual({ deleted: 0, kept: 0, more: false });
  });

  test("a stale or forged continuation cannot reach uploads younger than the window", async () => {
    const t = await setup();
    const image = await storeFile(t, PNG, "image/png");
    vi.setSystemTime(START + ORPHAN_IMAGE_RETENTION_MS - MINUTE);
    const tomorrow = Date.now() + ORPHAN_IMAGE_RETENTION_MS;
    expect(await sweep(t, { createdBefore: tomorrow })).toEqual({
      deleted: 0,
      kept: 0,
      more: false,
    });
    expect(await fileExists(t, image)).toBe(true);
  });

  test(`batches of ${ORPHAN_IMAGE_BATCH_SIZE} drain a bigger backlog, past a whole batch of uploads in use`, async () => {
    const t = await setup();
    const { userId } = await signUp(t, "user_backlog");
    // Oldest first: more uploads in use than one batch holds (each by a queued job), then the
    // orphans, then one upload in use among them, then one too young for this run.
    const inUse: Array<Id<"_storage">> = [];
    const orphans: Array<Id<"_storage">> = [];
    const queue = async (storageId: Id<"_storage">) => {
      inUse.push(storageId);
      await t.run((ctx) =>
        ctx.db.insert("jobs", {
          userId,
          prompt: "seeded",
          imageStorageId: storageId,
          durationSec: 5,
          creditsUsed: 5,
          status: "queued",
          creditStatus: "held",
          createdAt: Date.now(),
        }),
      );
    };
    for (let i = 0; i < ORPHAN_IMAGE_BATCH_SIZE + 5; i++) {
      await queue(await storeFile(t, PNG, "image/png"));
    }
    for (let i = 0; i < 2 * ORPHAN_IMAGE_BATCH_SIZE + 30; i++) {
      orphans.push(await storeFile(t, PNG, "image/png"));
      if (i === ORPHAN_IMAGE_BATCH_SIZE) await queue(await storeFile(t, PNG, "image/png"));
    }
    vi.setSystemTime(START + ORPHAN_IMAGE_RETENTION_MS + MINUTE);
    const young = await storeFile(t, PNG, "image/png");
    vi.setSystemTime(START + ORPHAN_IMAGE_RETENTION_MS + 2 * MINUTE);

    // The first batch is all in use: it keeps them, deletes nothing and carries on after them.
    expect(await sweep(t)).toEqual({ deleted: 0, kept: ORPHAN_IMAGE_BATCH_SIZE, more: true });
    const scheduled = await t.run((ctx) => ctx.db.system.query("_scheduled_functions").collect());
    expect(scheduled.map((s) => s.name)).toEqual(["media:deleteOrphanImages"]);
    await runScheduled(t);
    const exists = async (ids: Array<Id<"_storage">>) =>
      (await Promise.all(ids.map((id) => fileExists(t, id)))).filter(Boolean).length;
    expect(await exists(orphans)).toBe(0);
    expect(await exists(inUse)).toBe(inUse.length);
    expect(await fileExists(t, young)).toBe(true);
    // One transaction per batch: this call, then its continuations.
    const runs = await t.run((ctx) => ctx.db.system.query("_scheduled_functions").collect());
    expect(runs.filter((s) => s.name === "media:deleteOrphanImages")).toHaveLength(
      Math.ceil((inUse.length + orphans.length) / ORPHAN_IMAGE_BATCH_SIZE) - 1,
    );
  });
});

// ---------------------------------------------------------------------------------------------

/** A queued job of a fresh user, claimed by "w1" in bucket mode. */
async function claimedJob() {
  await bucketMode();
  const t = await setup();
  const { as } = await signUp(t, "user_video");
  const jobId = await as.mutation(api.jobs.createJob, { prompt: "a fox", durationSec: 5 });
  const claim = await post(t, "/worker/claim", { workerId: "w1" });
  expect(claim.status).toBe(200);
  return { t, as, jobId, claim: claim.body };
}

const put = (url: string, body: Uint8Array<ArrayBuffer>, contentType = "video/mp4") =>
  fetch(url, { method: "PUT", headers: { "Content-Type": contentType }, body });

const complete = (t: TestConvex, jobId: Id<"jobs">, extra: Record<string, unknown> = {}) =>
  post(t, "/worker/jobs/complete", { jobId, workerId: "w1", attempt: 1, ...extra });

describe("videos in the bucket", () => {
  test("claim → presigned PUT → HEAD-checked completion → presigned GET of the same bytes", async () => {
    const { t, as, jobId, claim } = await claimedJob();
    const key = `videos/${jobId}/attempt-1.mp4`;
    expect(claim.upload).toMatchObject({
      method: "PUT",
      key,
      headers: { "Content-Type": "video/mp4" },
    });
    // Valid for the lease, never longer.
    expect(claim.upload.expiresAt).toBeLessThanOrEqual(claim.leaseExpiresAt);
    expect(claim.upload.url.startsWith(`${s3.endpoint}/${bucket.bucket}/${key}?`)).toBe(true);

    const uploaded = await put(claim.upload.url, VIDEO);
    expect(uploaded.status).toBe(200);
    expect(await headObject(bucket, key)).toMatchObject({
      key,
      exists: true,
      size: VIDEO.length,
      contentType: "video/mp4",
    });

    const done = await complete(t, jobId);
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ changed: true, status: "done" });
    const job = (await jobDoc(t, jobId))!;
    // Served from the final key the completion copied the upload to.
    const finalKey = `videos/${jobId}/final-1.mp4`;
    expect(job).toMatchObject({
      videoKey: finalKey,
      videoBytes: VIDEO.length,
      creditStatus: "settled",
    });
    expect(await headObject(bucket, finalKey)).toMatchObject({ size: VIDEO.length });
    expect(job.r2Url).toBeUndefined();
    expect(job.expiresAt).toBe(Math.floor(job.finishedAt! / 1000) * 1000 + VIDEO_TTL_MS);

    const view = await as.query(api.jobs.getJob, { jobId });
    const url = new URL(view!.r2Url!);
    expect(url.pathname).toBe(`/${bucket.bucket}/${finalKey}`);
    // Dated at the finish, valid exactly until expiresAt; the same query gives the same URL.
    const date = url.searchParams.get("X-Amz-Date")!;
    const signedAt = Date.parse(
      `${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}T${date.slice(9, 11)}:${date.slice(11, 13)}:${date.slice(13, 15)}Z`,
    );
    expect(signedAt).toBe(Math.floor(job.finishedAt! / 1000) * 1000);
    expect(signedAt + Number(url.searchParams.get("X-Amz-Expires")) * 1000).toBe(job.expiresAt);
    expect((await as.query(api.jobs.getJob, { jobId }))!.r2Url).toBe(view!.r2Url);
    const listed = await as.query(api.jobs.listUserJobs, {});
    expect(listed.page[0].r2Url).toBe(view!.r2Url);

    const download = await fetch(view!.r2Url!);
    expect(download.status).toBe(200);
    expect(new Uint8Array(await download.arrayBuffer())).toEqual(VIDEO);

    // Repeating the completion changes nothing; another key is a conflict.
    expect((await complete(t, jobId)).body).toMatchObject({ changed: false });
    const other = await complete(t, jobId, { key: `videos/${jobId}/attempt-2.mp4` });
    expect(other).toMatchObject({ status: 409, body: { code: "CONFLICT" } });
    await checkInvariants(t);
    // The upload key's deletion runs now (job ids repeat in the next test's deployment).
    await runScheduled(t);
  });

  test("completion without an upload, with a wrong type or an empty object is a 409 that changes nothing", async () => {
    const { t, jobId, claim } = await claimedJob();
    const before = await snapshotDatabase(t);
    const missing = await complete(t, jobId);
    expect(missing.status).toBe(409);
    expect(missing.body).toMatchObject({ code: "CONFLICT" });
    expect(missing.body.message).toContain("No video was uploaded");
    expect(await snapshotDatabase(t)).toStrictEqual(before);

    expect((await put(claim.upload.url, VIDEO, "text/plain")).status).toBe(200);
    const wrongType = await complete(t, jobId);
    expect(wrongType).toMatchObject({ status: 409, body: { code: "CONFLICT" } });
    expect(wrongType.body.message).toContain("not video/mp4");

    expect((await put(claim.upload.url, new Uint8Array(0))).status).toBe(200);
    expect((await complete(t, jobId)).body.message).toContain("is empty");

    const withUrl = await complete(t, jobId, { r2Url: "https://evil.example.com/x.mp4" });
    expect(withUrl).toMatchObject({ status: 400, body: { code: "INVALID_ARGUMENT" } });
    const otherKey = await complete(t, jobId, { key: "videos/someone-else.mp4" });
    expect(otherKey).toMatchObject({ status: 409, body: { code: "CONFLICT" } });
    expect(await snapshotDatabase(t)).toStrictEqual(before);
    expect((await jobDoc(t, jobId))!.status).toBe("running");
  });

  test("the GET URL stops working at expiresAt; the expiry cron deletes the object and records it", async () => {
    const { t, as, jobId, claim } = await claimedJob();
    await put(claim.upload.url, VIDEO);
    expect((await complete(t, jobId)).status).toBe(200);
    const key = claim.upload.key as string;
    // The job as it is a day later: finished and expiring a day earlier than it really did.
    await t.run(async (ctx) => {
      const job = (await ctx.db.get("jobs", jobId))!;
      await ctx.db.patch("jobs", jobId, {
        finishedAt: job.finishedAt! - VIDEO_TTL_MS,
        expiresAt: job.expiresAt! - VIDEO_TTL_MS,
      });
    });
    const stale = (await as.query(api.jobs.getJob, { jobId }))!.r2Url!;
    expect((await fetch(stale)).status).toBe(403);

    await t.mutation(internal.jobs.expireOldJobs, {});
    const expired = (await jobDoc(t, jobId))!;
    expect(expired.status).toBe("expired");
    expect((await as.query(api.jobs.getJob, { jobId }))!.r2Url).toBeUndefined();
    await runScheduled(t);
    expect(await headObject(bucket, expired.videoKey!)).toEqual({
      key: expired.videoKey,
      exists: false,
    });
    expect(await headObject(bucket, key)).toEqual({ key, exists: false });
    expect((await jobDoc(t, jobId))!.videoDeletedAt).toEqual(expect.any(Number));
    // The expiry's row is done; the upload key's waits to be deleted once more (see below).
    expect((await deletionRows(t)).map((row) => row.reason)).toEqual(["completed"]);
  });

  test("a failed deletion is retried by the sweep until it succeeds", async () => {
    const { t, jobId, claim } = await claimedJob();
    await put(claim.upload.url, VIDEO);
    await complete(t, jobId);
    await runScheduled(t);
    // The upload key's deletion is left aside here; this is about the expired video's.
    await t.run(async (ctx) => {
      for (const row of await ctx.db.query("videoDeletions").collect()) {
        await ctx.db.delete("videoDeletions", row._id);
      }
    });
    const key = (await jobDoc(t, jobId))!.videoKey!;
    await t.run((ctx) => ctx.db.patch("jobs", jobId, { expiresAt: Date.now() - 1 }));
    // The bucket refuses (unknown access key) while the cron's deletion runs.
    vi.stubEnv("R2_ACCESS_KEY_ID", "WRONG-KEY");
    await t.mutation(internal.jobs.expireOldJobs, {});
    await runScheduled(t);
    expect((await headObject(bucket, key)).exists).toBe(true);
    const [row] = await t.run((ctx) => ctx.db.query("videoDeletions").collect());
    expect(row).toMatchObject({ key, attempts: 1, lastError: expect.stringContaining("403") });
    expect((await jobDoc(t, jobId))!.videoDeletedAt).toBeUndefined();

    // Not due yet: the sweep leaves it. Once due (the backoff has passed), it deletes it.
    expect(await t.mutation(internal.media.sweepVideoDeletions, {})).toEqual({
      scheduled: 0,
      more: false,
    });
    vi.stubEnv("R2_ACCESS_KEY_ID", s3.env.R2_ACCESS_KEY_ID);
    await t.run((ctx) =>
      ctx.db.patch("videoDeletions", row._id, { nextAttemptAt: Date.now() - 1 }),
    );
    expect(await t.mutation(internal.media.sweepVideoDeletions, {})).toEqual({
      scheduled: 1,
      more: false,
    });
    await runScheduled(t);
    expect((await headObject(bucket, key)).exists).toBe(false);
    expect((await jobDoc(t, jobId))!.videoDeletedAt).toEqual(expect.any(Number));
    expect(await t.run((ctx) => ctx.db.query("videoDeletions").collect())).toEqual([]);
    const registered = (crons as unknown as { crons: Record<string, { name: string }> }).crons;
    expect(registered["retry video deletions"]).toMatchObject({
      name: "media:sweepVideoDeletions",
    });
  });

  test("a deletion whose run never reports backs off: each sweep counts an attempt and doubles the wait", async () => {
    const { t, jobId } = await claimedJob();
    const start = Date.now();
    const id = await t.run((ctx) =>
      ctx.db.insert("videoDeletions", {
        jobId,
        key: `videos/${jobId}/attempt-9.mp4`,
        reason: "retried",
        attempts: 1,
        nextAttemptAt: start - 1,
        createdAt: start - 1,
      }),
    );
    const waits: number[] = [];
    for (let sweep = 0; sweep < 4; sweep++) {
      // The run the sweep enqueues is never carried out here: as if it never reported.
      const before = Date.now();
      expect(await t.mutation(internal.media.sweepVideoDeletions, {})).toMatchObject({
        scheduled: 1,
      });
      const row = (await t.run((ctx) => ctx.db.get("videoDeletions", id)))!;
      expect(row.attempts).toBe(2 + sweep);
      waits.push(Math.round((row.nextAttemptAt - before) / 60_000));
      await t.run((ctx) => ctx.db.patch("videoDeletions", id, { nextAttemptAt: Date.now() - 1 }));
    }
    expect(waits).toEqual([20, 40, 80, 160]);
  });

  test("a failed or retried attempt's partial upload is deleted; nothing else in the bucket is touched", async () => {
    const { t, jobId, claim } = await claimedJob();
    const bystander = "videos/not-ours/keep.mp4";
    const now = Date.now();
    const bystanderPut = await presign(bucket, "PUT", bystander, now, now + 60_000, {
      "Content-Type": "video/mp4",
    });
    expect((await put(bystanderPut.url, VIDEO)).status).toBe(200);
    await put(claim.upload.url, VIDEO);
    const retry = await post(t, "/worker/jobs/fail", {
      jobId,
      workerId: "w1",
      attempt: 1,
      error: "OOM",
      retryable: true,
    });
    expect(retry.body).toMatchObject({ status: "queued" });
    await runScheduled(t);
    expect((await headObject(bucket, claim.upload.key)).exists).toBe(false);

    const second = await post(t, "/worker/claim", { workerId: "w2" });
    expect(second.body.upload.key).toBe(`videos/${jobId}/attempt-2.mp4`);
    await put(second.body.upload.url, VIDEO);
    await post(t, "/worker/jobs/fail", { jobId, workerId: "w2", attempt: 2, error: "bad" });
    await runScheduled(t);
    expect((await headObject(bucket, second.body.upload.key)).exists).toBe(false);
    expect((await jobDoc(t, jobId))!).toMatchObject({
      status: "failed",
      videoDeletedAt: expect.any(Number),
    });
    expect((await headObject(bucket, bystander)).exists).toBe(true);
  });
});

describe("uploads that land after their attempt ended", () => {
  afterEach(() => {
    vi.useRealTimers();
  });
  const download = async (url: string) => new Uint8Array(await (await fetch(url)).arrayBuffer());

  test("a PUT after completion (claim's or heartbeat's URL) cannot replace what the owner downloads", async () => {
    const { t, as, jobId, claim } = await claimedJob();
    const beat = await post(t, "/worker/jobs/heartbeat", { jobId, workerId: "w1", attempt: 1 });
    expect(beat.status).toBe(200);
    expect((await put(beat.body.upload.url, VIDEO)).status).toBe(200);
    expect((await complete(t, jobId)).status).toBe(200);
    // Both URLs are still inside their window: the bucket takes an empty body from either.
    expect((await put(claim.upload.url, new Uint8Array(0))).status).toBe(200);
    expect((await put(beat.body.upload.url, new Uint8Array(0))).status).toBe(200);
    expect((await headObject(bucket, claim.upload.key)).exists).toBe(true);

    const view = (await as.query(api.jobs.getJob, { jobId }))!;
    expect(view.videoBytes).toBe(VIDEO.length);
    expect(await download(view.r2Url!)).toEqual(VIDEO);
    // Repeating the completion neither copies again nor changes the job.
    expect((await complete(t, jobId)).body).toMatchObject({ changed: false });
    expect(await download(view.r2Url!)).toEqual(VIDEO);
    expect(await headObject(bucket, `videos/${jobId}/final-1.mp4`)).toMatchObject({
      size: VIDEO.length,
    });
    // The upload key's deletion (before the next test's deployment repeats the job id).
    await runScheduled(t);
  });

  test("an object changed between the completion's HEAD and its copy is a 409, not a done job", async () => {
    const { t, jobId, claim } = await claimedJob();
    await put(claim.upload.url, VIDEO);
    // s3rver ignores x-amz-copy-source-if-match, so the race is played at the copy itself: the
    // upload is emptied as the copy is sent (R2 would refuse the copy with 412 instead).
    const realFetch = globalThis.fetch;
    vi.stubGlobal("fetch", async (input: string | URL | Request, init?: RequestInit) => {
      const headers = new Headers(init?.headers);
      if (init?.method === "PUT" && headers.has("x-amz-copy-source")) {
        expect(headers.get("x-amz-copy-source-if-match")).toMatch(/^"?[0-9a-f]{32}"?$/);
        await realFetch(claim.upload.url, {
          method: "PUT",
          headers: { "Content-Type": "video/mp4" },
          body: new Uint8Array(0),
        });
      }
      return realFetch(input, init);
    });
    try {
      const before = await snapshotDatabase(t);
      const raced = await complete(t, jobId);
      expect(raced).toMatchObject({ status: 409, body: { code: "CONFLICT" } });
      expect(raced.body.message).toContain("final-1.mp4 is empty");
      expect(await snapshotDatabase(t)).toStrictEqual(before);
    } finally {
      vi.unstubAllGlobals();
    }
    // Uploaded again: the completion goes through with the bytes it checked.
    await put(claim.upload.url, VIDEO);
    expect((await complete(t, jobId)).status).toBe(200);
    expect((await jobDoc(t, jobId))!.videoBytes).toBe(VIDEO.length);
    await runScheduled(t);
  });

  test("an upload that lands after its attempt failed is deleted again once its URL has expired", async () => {
    const { t, jobId, claim } = await claimedJob();
    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() });
    const failed = await post(t, "/worker/jobs/fail", {
      jobId,
      workerId: "w1",
      attempt: 1,
      error: "bad render",
    });
    expect(failed.body).toMatchObject({ status: "failed" });
    await runScheduled(t);
    // The attempt's upload key and its final key were deleted at once, and wait for once more.
    const writableUntil = claim.leaseExpiresAt + UPLOAD_LANDING_MARGIN_MS;
    const waiting = await deletionRows(t);
    expect(
      waiting.map((row) => [row.key, row.reason, row.writableUntil, row.nextAttemptAt]),
    ).toEqual([
      [claim.upload.key, "failed", writableUntil, writableUntil],
      [`videos/${jobId}/final-1.mp4`, "failed", writableUntil, writableUntil],
    ]);
    expect((await jobDoc(t, jobId))!.videoDeletedAt).toEqual(expect.any(Number));

    // The worker's upload lands late, with the claim's URL still inside its window.
    expect(claim.upload.expiresAt).toBeGreaterThan(Date.now());
    expect((await put(claim.upload.url, VIDEO)).status).toBe(200);
    vi.setSystemTime(writableUntil - 60_000);
    expect(await t.mutation(internal.media.sweepVideoDeletions, {})).toEqual({
      scheduled: 0,
      more: false,
    });
    expect((await headObject(bucket, claim.upload.key)).exists).toBe(true);
    vi.setSystemTime(writableUntil);
    expect(await t.mutation(internal.media.sweepVideoDeletions, {})).toEqual({
      scheduled: 2,
      more: false,
    });
    await runScheduled(t);
    expect((await headObject(bucket, claim.upload.key)).exists).toBe(false);
    expect(await deletionRows(t)).toEqual([]);
  });
});

describe("a hanging bucket", () => {
  test("the completion's HEAD gives up: 503 UNAVAILABLE within the timeout, nothing written", async () => {
    const { t, jobId, claim } = await claimedJob();
    await put(claim.upload.url, VIDEO);
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    // A server on 127.0.0.1 that accepts connections and never answers; it stops by itself.
    const sockets = new Set<Socket>();
    const hanging = createServer(() => {});
    hanging.on("connection", (socket) => sockets.add(socket));
    await new Promise<void>((resolve) => hanging.listen(0, "127.0.0.1", resolve));
    const stop = () => {
      for (const socket of sockets) socket.destroy();
      hanging.close();
    };
    setTimeout(stop, R2_REQUEST_TIMEOUT_MS + 20_000).unref();
    try {
      const { port } = hanging.address() as AddressInfo;
      vi.stubEnv("R2_ENDPOINT", `http://127.0.0.1:${port}`);
      const before = await snapshotDatabase(t);
      const started = performance.now();
      const reply = await complete(t, jobId);
      const elapsed = performance.now() - started;
      expect(reply).toMatchObject({ status: 503, body: { code: "UNAVAILABLE" } });
      expect(elapsed).toBeGreaterThanOrEqual(R2_REQUEST_TIMEOUT_MS - 50);
      expect(sockets.size, "the HEAD reached the hanging server").toBeGreaterThan(0);
      expect(await snapshotDatabase(t)).toStrictEqual(before);
      expect(logged).toHaveBeenCalledWith(
        "Checking an uploaded video failed",
        expect.stringContaining("TimeoutError"),
      );
    } finally {
      stop();
      logged.mockRestore();
    }
    // The bucket back: the same completion goes through.
    vi.stubEnv("R2_ENDPOINT", s3.endpoint);
    expect((await complete(t, jobId)).status).toBe(200);
  });
});

describe("expiry scheduling stays bounded", () => {
  test(`one deletion action per batch of ${EXPIRE_BATCH_SIZE} expired jobs, however many`, async () => {
    await bucketMode();
    const t = await setup();
    const { userId } = await signUp(t, "user_many");
    const count = EXPIRE_BATCH_SIZE * 2 + 50;
    await t.run(async (ctx) => {
      for (let i = 0; i < count; i++) {
        await ctx.db.insert("jobs", {
          userId,
          prompt: `job ${i}`,
          durationSec: 5,
          creditsUsed: 0,
          status: "done",
          creditStatus: "settled",
          createdAt: i,
          finishedAt: i,
          expiresAt: i + 1,
          videoKey: `videos/seeded-${i}/attempt-1.mp4`,
          videoBytes: 1,
        });
      }
    });
    const first = await t.mutation(internal.jobs.expireOldJobs, {});
    expect(first).toEqual({ expired: EXPIRE_BATCH_SIZE, more: true });
    const scheduled = await t.run((ctx) => ctx.db.system.query("_scheduled_functions").collect());
    // The continuation of the expiry; the batch's deletions wait in the workpool as one run.
    expect(scheduled.map((s) => s.name).filter((name) => !name.includes("/"))).toEqual([
      "jobs:expireOldJobs",
    ]);
    const rows = await t.run((ctx) => ctx.db.query("videoDeletions").collect());
    expect(rows).toHaveLength(EXPIRE_BATCH_SIZE);
    // The whole backlog drains: every job expired, every deletion done and recorded.
    await runScheduled(t);
    const jobs = await t.run((ctx) => ctx.db.query("jobs").collect());
    expect(jobs.filter((j) => j.status !== "expired" || j.videoDeletedAt === undefined)).toEqual(
      [],
    );
    expect(await t.run((ctx) => ctx.db.query("videoDeletions").collect())).toEqual([]);
  });
});

describe("bucket mode: hostile completions are refused and write nothing (the corpus's HTTP rows)", () => {
  test("POST /worker/jobs/complete", async () => {
    const { t, jobId, claim } = await claimedJob();
    const scheme = bearerScheme("WORKER_SECRET");
    const row: HttpRouteRow = {
      method: "POST",
      path: "/worker/jobs/complete",
      scheme: { ...scheme, env: { ...scheme.env, ...s3.env, R2_BUCKET: bucket.bucket } },
      validBody: () => ({ jobId, workerId: "w1", attempt: 1 }),
    };
    const send = async (
      body: unknown,
      expect: { status: number[]; code: "CONFLICT" | "INVALID_ARGUMENT" },
    ) => {
      const text = JSON.stringify(body);
      await expectHttpRefusedWithoutWrites(
        t,
        row,
        { headers: await scheme.sign(text), body: text },
        expect,
      );
    };
    const conflict = { status: [409], code: "CONFLICT" as const };
    const bad = { status: [400], code: "INVALID_ARGUMENT" as const };
    // An object the worker never uploaded.
    await send({ jobId, workerId: "w1", attempt: 1 }, conflict);
    await send({ jobId, workerId: "w1", attempt: 1, r2Url: "https://cdn.example.com/v.mp4" }, bad);
    await send({ jobId, workerId: "w1", attempt: 1, key: 5 }, bad);
    await send({ jobId, workerId: "w1", attempt: 1, key: "videos/other/attempt-1.mp4" }, conflict);
    await put(claim.upload.url, VIDEO);
    // The harness unstubs every variable after each request: set them again for this one.
    for (const [name, value] of Object.entries(row.scheme.env)) vi.stubEnv(name, value);
    vi.stubEnv("WORKER_SECRET", SECRET);
    expect((await complete(t, jobId)).status).toBe(200);
    // The completion's deletion of the upload key runs now, not during the refusals below.
    await runScheduled(t);
    // A second completion with another key.
    await send(
      { jobId, workerId: "w1", attempt: 1, key: `videos/${jobId}/attempt-2.mp4` },
      conflict,
    );
    // Bucket env set only in part: 503, nothing written.
    await expectHttpRefusedWithoutWrites(
      t,
      { ...row, scheme: { ...row.scheme, env: { ...row.scheme.env, R2_BUCKET: "" } } },
      { headers: await scheme.sign("{}"), body: JSON.stringify({ jobId, workerId: "w1" }) },
      { status: [503], code: "UNAVAILABLE" },
    );
  });
});
