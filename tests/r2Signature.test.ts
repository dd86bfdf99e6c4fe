import aws4 from "aws4";
import { afterEach, expect, test, vi } from "vitest";
import { api } from "../convex/_generated/api";
import { presign } from "../convex/lib/r2";
import { setup, signUp, type TestConvex } from "./support/setup";

/**
 * The test S3 server (s3rver) does not check SigV4 signatures, so what convex/lib/r2.ts signs is
 * checked here against an independent SigV4 implementation (the `aws4` package): same
 * credentials, same moment, same validity, same signed headers, the same signature. Presigned
 * GETs (the owner's video), presigned PUTs (the worker's upload) and the Authorization header of
 * the HEAD and DELETE requests the backend sends.
 */
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllEnvs();
  vi.unstubAllGlobals();
});

const config = {
  endpoint: "https://account-id.r2.cloudflarestorage.com",
  bucket: "cineweave-videos",
  accessKeyId: "AKIAEXAMPLEKEY",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
};

test.each([
  ["videos/j57abc/attempt-1.mp4", 3600],
  ["videos/j57abc/attempt-2.mp4", 86_400],
])("a presigned GET of %s (%ss) carries the signature aws4 computes", async (key, seconds) => {
  const at = Date.parse("2026-03-01T12:34:56Z");
  const ours = new URL((await presign(config, "GET", key, at, at + seconds * 1000)).url);
  vi.useFakeTimers({ now: at });
  const theirs = aws4.sign(
    {
      host: "account-id.r2.cloudflarestorage.com",
      path: `/${config.bucket}/${key}?X-Amz-Expires=${seconds}`,
      method: "GET",
      service: "s3",
      region: "auto",
      signQuery: true,
    },
    { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
  );
  const theirsUrl = new URL(`https://${theirs.host}${theirs.path}`);
  expect(ours.searchParams.get("X-Amz-Date")).toBe(theirsUrl.searchParams.get("X-Amz-Date"));
  expect(ours.searchParams.get("X-Amz-Credential")).toBe(
    theirsUrl.searchParams.get("X-Amz-Credential"),
  );
  expect(ours.searchParams.get("X-Amz-Signature")).toBe(
    theirsUrl.searchParams.get("X-Amz-Signature"),
  );
});

// ---------------------------------------------------------------------------------------------
// What the backend itself hands out and sends, with the bucket configured (R2_* set): the claim's
// and the heartbeat's presigned PUT, the completion's HEAD and a failed attempt's DELETE. Each is
// rebuilt with aws4 from what the worker is told to send (the PUT's `upload.headers`) or what
// the request carried, so a header sent but not signed (or signed but not sent, or signed with
// another value) gives another signature.

const SECRET = "signature-worker-secret";
const host = new URL(config.endpoint).host;
const credentials = { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey };

function bucketEnv() {
  vi.stubEnv("WORKER_SECRET", SECRET);
  vi.stubEnv("R2_ENDPOINT", config.endpoint);
  vi.stubEnv("R2_ACCESS_KEY_ID", config.accessKeyId);
  vi.stubEnv("R2_SECRET_ACCESS_KEY", config.secretAccessKey);
  vi.stubEnv("R2_BUCKET", config.bucket);
}

async function post(t: TestConvex, path: string, body: unknown) {
  const response = await t.fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${SECRET}` },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return { status: response.status, body: (text === "" ? null : JSON.parse(text)) as any };
}

/** aws4's presigned URL for `method` on `key`, valid `seconds`, signing `headers` (and host). */
function aws4Presigned(
  method: string,
  key: string,
  seconds: number,
  headers: Record<string, string>,
): URL {
  const signed = aws4.sign(
    {
      host,
      path: `/${config.bucket}/${key}?X-Amz-Expires=${seconds}`,
      method,
      headers: { ...headers },
      service: "s3",
      region: "auto",
      signQuery: true,
    },
    credentials,
  );
  return new URL(`https://${signed.host}${signed.path}`);
}

/** The presigned URL `ours` is exactly what aws4 signs for the same request. */
function expectSameUrl(ours: URL, theirs: URL) {
  expect(ours.origin + ours.pathname).toBe(theirs.origin + theirs.pathname);
  expect(Object.fromEntries(ours.searchParams)).toEqual(Object.fromEntries(theirs.searchParams));
}

test("the claim's and the heartbeat's presigned PUT (Content-Type signed) are what aws4 signs", async () => {
  bucketEnv();
  const at = Date.parse("2026-03-01T12:34:56.789Z");
  vi.useFakeTimers({ toFake: ["Date"], now: at });
  const t = await setup();
  const { as } = await signUp(t, "user_sig_put");
  const jobId = await as.mutation(api.jobs.createJob, { prompt: "a fox", durationSec: 5 });
  const claim = await post(t, "/worker/claim", { workerId: "w1" });
  expect(claim.status).toBe(200);
  const key = `videos/${jobId}/attempt-1.mp4`;
  // The worker is told to send exactly these headers; the URL must be signed for them.
  expect(claim.body.upload).toMatchObject({
    method: "PUT",
    key,
    headers: { "Content-Type": "video/mp4" },
  });
  const ours = new URL(claim.body.upload.url);
  // Dated at the claim (the whole second), valid until the lease (10 min by default) ends.
  expect(ours.searchParams.get("X-Amz-Date")).toBe("20260301T123456Z");
  expect(ours.searchParams.get("X-Amz-Expires")).toBe("600");
  expect(ours.searchParams.get("X-Amz-SignedHeaders")).toBe("content-type;host");
  const theirs = aws4Presigned("PUT", key, 600, claim.body.upload.headers);
  expectSameUrl(ours, theirs);
  // Control: the comparison sees the signed headers (without Content-Type, aws4 signs otherwise).
  const unsigned = aws4Presigned("PUT", key, 600, {});
  expect(unsigned.searchParams.get("X-Amz-Signature")).not.toBe(
    ours.searchParams.get("X-Amz-Signature"),
  );

  // A heartbeat a minute later: a fresh URL, dated then, for the extended lease.
  vi.setSystemTime(at + 60_000);
  const beat = await post(t, "/worker/jobs/heartbeat", { jobId, workerId: "w1", attempt: 1 });
  expect(beat.status).toBe(200);
  expect(beat.body.upload).toMatchObject({ key, headers: { "Content-Type": "video/mp4" } });
  const fresh = new URL(beat.body.upload.url);
  expect(fresh.searchParams.get("X-Amz-Date")).toBe("20260301T123556Z");
  expect(fresh.searchParams.get("X-Amz-Expires")).toBe("600");
  expectSameUrl(fresh, aws4Presigned("PUT", key, 600, beat.body.upload.headers));
});

type Sent = { method: string; url: URL; headers: Headers };

/**
 * The Authorization header aws4 computes for a request sent with `sent`'s method, URL and
 * headers (all of them but Authorization and X-Amz-Date: aws4 dates it from the clock itself).
 */
function aws4Authorization(sent: Sent): { authorization: string; date: string } {
  const headers: Record<string, string> = {};
  sent.headers.forEach((value, name) => {
    if (name !== "authorization" && name !== "x-amz-date") headers[name] = value;
  });
  const signed = aws4.sign(
    {
      host: sent.url.host,
      path: sent.url.pathname + sent.url.search,
      method: sent.method,
      headers,
      service: "s3",
      region: "auto",
    },
    credentials,
  );
  const out = signed.headers as Record<string, string>;
  return { authorization: out.Authorization, date: out["X-Amz-Date"] };
}

test("the completion's HEADs and copy, and a failed attempt's DELETEs, carry the Authorization aws4 computes", async () => {
  bucketEnv();
  const at = Date.parse("2026-03-02T08:09:10.500Z");
  vi.useFakeTimers({ toFake: ["Date"], now: at });
  // The bucket, stubbed: every request is recorded; HEAD finds an mp4, a copy and a DELETE succeed.
  const sent: Sent[] = [];
  const etag = '"0123456789abcdef0123456789abcdef"';
  vi.stubGlobal("fetch", async (input: string | URL | Request, init?: RequestInit) => {
    const method = init?.method ?? "GET";
    sent.push({ method, url: new URL(String(input)), headers: new Headers(init?.headers) });
    if (method === "HEAD") {
      return new Response(null, {
        status: 200,
        headers: { "Content-Length": "4096", "Content-Type": "video/mp4", ETag: etag },
      });
    }
    return method === "PUT"
      ? new Response(`<CopyObjectResult><ETag>${etag}</ETag></CopyObjectResult>`, { status: 200 })
      : new Response(null, { status: 204 });
  });
  const t = await setup();
  const { as } = await signUp(t, "user_sig_head");
  const jobId = await as.mutation(api.jobs.createJob, { prompt: "a fox", durationSec: 5 });

  // Attempt 1 fails (retryable): its partial upload (and any copy of it) is DELETEd.
  expect((await post(t, "/worker/claim", { workerId: "w1" })).status).toBe(200);
  const retry = await post(t, "/worker/jobs/fail", {
    jobId,
    workerId: "w1",
    attempt: 1,
    error: "OOM",
    retryable: true,
  });
  expect(retry.body).toMatchObject({ status: "queued" });
  await t.finishAllScheduledFunctions(() => {});
  // Attempt 2 completes: the backend HEADs its upload, copies it to the final key, HEADs that.
  expect((await post(t, "/worker/claim", { workerId: "w1" })).status).toBe(200);
  const done = await post(t, "/worker/jobs/complete", { jobId, workerId: "w1", attempt: 2 });
  expect(done.status).toBe(200);

  const path = (name: string) => `/${config.bucket}/videos/${jobId}/${name}.mp4`;
  const requests = sent.map((s) => [s.method, s.url.host, s.url.pathname + s.url.search]);
  expect(requests.slice(0, 2).sort()).toEqual([
    ["DELETE", host, path("attempt-1")],
    ["DELETE", host, path("final-1")],
  ]);
  expect(requests.slice(2)).toEqual([
    ["HEAD", host, path("attempt-2")],
    ["PUT", host, path("final-2")],
    ["HEAD", host, path("final-2")],
  ]);
  // The copy names its source and the very object the HEAD found.
  const copy = sent[3];
  expect(copy.headers.get("x-amz-copy-source")).toBe(path("attempt-2"));
  expect(copy.headers.get("x-amz-copy-source-if-match")).toBe(etag);
  for (const request of sent) {
    const theirs = aws4Authorization(request);
    expect(request.headers.get("x-amz-date")).toBe("20260302T080910Z");
    expect(request.headers.get("x-amz-date")).toBe(theirs.date);
    expect(request.headers.get("authorization")).toBe(theirs.authorization);
    // S3 needs host, the payload hash and the date signed; a copy its source and condition too.
    expect(theirs.authorization).toContain(
      request === copy
        ? "SignedHeaders=host;x-amz-content-sha256;x-amz-copy-source;x-amz-copy-source-if-match;x-amz-date,"
        : "SignedHeaders=host;x-amz-content-sha256;x-amz-date,",
    );
  }
});
