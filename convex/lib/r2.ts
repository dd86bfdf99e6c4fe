import { AwsV4Signer } from "aws4fetch";

/**
 * The private video bucket: Cloudflare R2 (or any S3-compatible store) through the S3 API,
 * signed with aws4fetch (SigV4 over Web Crypto, so it runs in Convex's default runtime: queries
 * and mutations can presign, actions can also send). Path-style URLs:
 * `<endpoint>/<bucket>/<key>`. Keys are decided by the backend (`videoKeyFor`), never by a
 * worker, and only those keys are ever signed, read or deleted. Nothing here touches the
 * database.
 */

export type R2Config = {
  /** `https://<account>.r2.cloudflarestorage.com`, no trailing slash. */
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
};

export type R2Setting =
  { kind: "off" } | { kind: "on"; config: R2Config } | { kind: "broken"; reason: string };

/** A finished video may be at most this large (the completion's HEAD check). */
export const VIDEO_MAX_BYTES = 2 * 1024 * 1024 * 1024;
export const VIDEO_CONTENT_TYPE = "video/mp4";
/** SigV4 presigned URLs live at most 7 days. */
export const PRESIGN_MAX_SECONDS = 604_800;

const R2_VARS = ["R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "R2_BUCKET"] as const;

function env(name: string): string | undefined {
  const value = process.env[name]?.trim();
  return value === undefined || value === "" ? undefined : value;
}

/**
 * The endpoint's origin, or null. https, or http on a loopback address (an S3-compatible
 * server on the developer's machine); no path, query or credentials.
 */
function parseEndpoint(raw: string): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  const loopback = ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname);
  const schemeOk = url.protocol === "https:" || (url.protocol === "http:" && loopback);
  const bare =
    (url.pathname === "/" || url.pathname === "") &&
    url.search === "" &&
    url.hash === "" &&
    url.username === "" &&
    url.password === "";
  return schemeOk && bare ? url.origin : null;
}

/**
 * R2_ENDPOINT (or R2_ACCOUNT_ID), R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY and R2_BUCKET. None set:
 * off (development mode: workers report an https URL). All set and usable: on. Anything in
 * between is broken: the worker routes refuse with 503 rather than fall back to accepting
 * arbitrary URLs.
 */
export function r2Setting(): R2Setting {
  const endpointRaw = env("R2_ENDPOINT");
  const accountId = env("R2_ACCOUNT_ID");
  const values = R2_VARS.map(env);
  if (
    endpointRaw === undefined &&
    accountId === undefined &&
    values.every((x) => x === undefined)
  ) {
    return { kind: "off" };
  }
  const missing = R2_VARS.filter((_, i) => values[i] === undefined);
  if (endpointRaw === undefined && accountId === undefined) {
    missing.unshift("R2_ENDPOINT" as never);
  }
  if (missing.length > 0) {
    return { kind: "broken", reason: `missing ${missing.join(", ")}` };
  }
  let endpoint: string | null;
  if (endpointRaw !== undefined) {
    endpoint = parseEndpoint(endpointRaw);
    if (endpoint === null) {
      return { kind: "broken", reason: "R2_ENDPOINT must be an https:// origin without a path" };
    }
  } else if (/^[a-z0-9]{1,64}$/i.test(accountId!)) {
    endpoint = `https://${accountId}.r2.cloudflarestorage.com`;
  } else {
    return { kind: "broken", reason: "R2_ACCOUNT_ID must be letters and digits" };
  }
  const [accessKeyId, secretAccessKey, bucket] = values as string[];
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    return { kind: "broken", reason: "R2_BUCKET is not a valid bucket name" };
  }
  return { kind: "on", config: { endpoint, bucket, accessKeyId, secretAccessKey } };
}

/**
 * The object key a job's attempt uploads its video to (its presigned PUTs write here): decided
 * here, never by a worker.
 */
export function videoKeyFor(jobId: string, attempt: number): string {
  return `videos/${jobId}/attempt-${attempt}.mp4`;
}

/**
 * The key the completion copies an attempt's checked upload to, and the owner downloads from. No
 * upload URL is ever signed for it: only the backend's CopyObject writes it, so nothing can
 * replace a finished video.
 */
export function finalVideoKeyFor(jobId: string, attempt: number): string {
  return `videos/${jobId}/final-${attempt}.mp4`;
}

function objectPath(config: R2Config, key: string): string {
  return `/${config.bucket}/${key.split("/").map(encodeURIComponent).join("/")}`;
}

function objectUrl(config: R2Config, key: string): string {
  return `${config.endpoint}${objectPath(config, key)}`;
}

/** SigV4's `X-Amz-Date`: UTC, whole seconds. */
function amzDate(ms: number): string {
  return new Date(ms).toISOString().replace(/[:-]|\.\d{3}/g, "");
}

function signer(
  config: R2Config,
  init: { method: string; url: string; headers?: Record<string, string> },
  extra: { signQuery?: boolean; datetime?: string; allHeaders?: boolean } = {},
) {
  return new AwsV4Signer({
    ...init,
    accessKeyId: config.accessKeyId,
    secretAccessKey: config.secretAccessKey,
    service: "s3",
    region: "auto",
    ...extra,
  });
}

export type Presigned = { url: string; expiresAt: number };

/**
 * A presigned URL for `method` on `key`, dated `signedAtMs` (rounded down to the second) and
 * valid until `validUntilMs` at the latest (rounded down to the second, at most 7 days after
 * the date). Deterministic: the same inputs give the same URL, so a cached query can return it.
 * Headers in `headers` are signed: the request must send them as given.
 */
export async function presign(
  config: R2Config,
  method: "GET" | "PUT",
  key: string,
  signedAtMs: number,
  validUntilMs: number,
  headers: Record<string, string> = {},
): Promise<Presigned> {
  const date = Math.floor(signedAtMs / 1000) * 1000;
  const seconds = Math.min(PRESIGN_MAX_SECONDS, Math.floor((validUntilMs - date) / 1000));
  if (!(seconds >= 1)) {
    throw new Error("presign: the URL would already have expired");
  }
  const url = new URL(objectUrl(config, key));
  url.searchParams.set("X-Amz-Expires", String(seconds));
  const signed = await signer(
    config,
    { method, url: url.toString(), headers },
    { signQuery: true, datetime: amzDate(date), allHeaders: true },
  ).sign();
  return { url: signed.url.toString(), expiresAt: date + seconds * 1000 };
}

export type ObjectHead =
  | { key: string; exists: false }
  | { key: string; exists: true; size: number; contentType: string | null; etag: string | null };

/**
 * Every request to the bucket gives up after this long (headers and body): a hanging R2 makes
 * the completion answer 503 well inside a worker's HTTP timeout, and a deletion fail and retry.
 */
export const R2_REQUEST_TIMEOUT_MS = 10_000;
/**
 * A CopyObject gives up after this long: R2 copies server-side, but a video of up to
 * `VIDEO_MAX_BYTES` takes longer than a HEAD. A copy that timed out is simply run again by the
 * next completion (it overwrites the same key with the same object).
 */
export const R2_COPY_TIMEOUT_MS = 30_000;

/** Thrown when the bucket could not be reached or answered something unexpected. */
export class R2Error extends Error {}

async function send(
  config: R2Config,
  method: "HEAD" | "DELETE" | "PUT",
  key: string,
  options: { headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ response: Response; body: string }> {
  const signed = await signer(config, {
    method,
    url: objectUrl(config, key),
    headers: options.headers,
  }).sign();
  try {
    const response = await fetch(signed.url, {
      method,
      headers: signed.headers,
      signal: AbortSignal.timeout(options.timeoutMs ?? R2_REQUEST_TIMEOUT_MS),
    });
    // Read the body (the same timeout bounds it): a copy's outcome is in it, and reading lets
    // the connection be reused.
    return { response, body: await response.text() };
  } catch (error) {
    throw new R2Error(`${method} ${key}: the bucket could not be reached (${String(error)})`);
  }
}

/** Whether the object exists, with its size and content type (one HEAD request). */
export async function headObject(config: R2Config, key: string): Promise<ObjectHead> {
  const { response } = await send(config, "HEAD", key);
  if (response.status === 404) {
    return { key, exists: false };
  }
  if (response.status !== 200) {
    throw new R2Error(`HEAD ${key}: the bucket answered ${response.status}`);
  }
  const size = Number(response.headers.get("Content-Length"));
  return {
    key,
    exists: true,
    size: Number.isSafeInteger(size) ? size : -1,
    contentType: response.headers.get("Content-Type"),
    etag: response.headers.get("ETag"),
  };
}

/**
 * CopyObject (`PUT` with `x-amz-copy-source`, done by the bucket itself): `from` to `to`, with
 * its content type. With `ifMatch` (the ETag a HEAD of `from` found) the bucket copies only that
 * very object (`x-amz-copy-source-if-match`: R2 and S3 answer 412 when `from` has changed since).
 * "missing": `from` is not there; "changed": it is no longer the object `ifMatch` names.
 */
export async function copyObject(
  config: R2Config,
  from: string,
  to: string,
  ifMatch: string | null,
): Promise<"copied" | "missing" | "changed"> {
  const headers: Record<string, string> = { "x-amz-copy-source": objectPath(config, from) };
  if (ifMatch !== null) {
    headers["x-amz-copy-source-if-match"] = ifMatch;
  }
  const { response, body } = await send(config, "PUT", to, {
    headers,
    timeoutMs: R2_COPY_TIMEOUT_MS,
  });
  if (response.status === 404) {
    return "missing";
  }
  if (response.status === 412) {
    return "changed";
  }
  // S3 may answer 200 and report a copy that failed along the way in the body.
  if (response.status !== 200 || !body.includes("<CopyObjectResult")) {
    throw new R2Error(`COPY ${from} to ${to}: the bucket answered ${response.status}`);
  }
  return "copied";
}

/** Deletes the object; deleting one that is not there succeeds too (S3 answers 204). */
export async function deleteObject(config: R2Config, key: string): Promise<void> {
  const { response } = await send(config, "DELETE", key);
  if (response.status !== 204 && response.status !== 200 && response.status !== 404) {
    throw new R2Error(`DELETE ${key}: the bucket answered ${response.status}`);
  }
}
