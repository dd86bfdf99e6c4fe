import aws4 from "aws4";
import { afterEach, expect, test, vi } from "vitest";
import { presign } from "../convex/lib/r2";

/**
 * The test S3 server (s3rver) does not check SigV4 signatures, so the presigned URLs are checked
 * here against an independent SigV4 implementation (the `aws4` package): same credentials, same
 * moment, same validity, the same signature.
 */
afterEach(() => {
  vi.useRealTimers();
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
