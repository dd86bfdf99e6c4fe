import { isAppError, type ErrorCode } from "./errors";

/**
 * Helpers for HTTP actions (the worker API, webhooks): JSON responses, the `{ code, message }`
 * error body, mapping of ConvexError codes to HTTP statuses, JSON body parsing and field
 * checks, and a constant-time shared-secret check. Nothing here touches the database.
 */

/** Codes only the HTTP layer produces, on top of the ConvexError codes. */
export type HttpErrorCode = ErrorCode | "PAYLOAD_TOO_LARGE" | "UNSUPPORTED_MEDIA_TYPE" | "INTERNAL";

export const HTTP_STATUS_BY_CODE: Record<HttpErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  INSUFFICIENT_CREDITS: 402,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  INVALID_TRANSITION: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  PAYMENT_PROVIDER_ERROR: 502,
  UNAVAILABLE: 503,
};

/** Largest request body `readJsonObject` accepts by default. */
export const MAX_JSON_BODY_BYTES = 64 * 1024;

/** Thrown while reading a request; `jsonErrorResponse` turns it into its status and body. */
export class HttpError extends Error {
  constructor(
    readonly code: HttpErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function jsonResponse(status: number, body: unknown, headers?: HeadersInit): Response {
  const response = new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
  return response;
}

export function noContentResponse(): Response {
  return new Response(null, { status: 204 });
}

/** `{ code, message }` with the code's status. */
export function errorResponse(code: HttpErrorCode, message: string, headers?: HeadersInit) {
  return jsonResponse(HTTP_STATUS_BY_CODE[code], { code, message }, headers);
}

/**
 * The response for anything a handler throws: an `HttpError` or a ConvexError `{ code, message }`
 * keeps its code and gets the matching status; anything else is an unexpected bug, logged and
 * answered with a generic 500 that reveals nothing.
 */
export function jsonErrorResponse(error: unknown): Response {
  if (error instanceof HttpError) {
    return errorResponse(error.code, error.message);
  }
  if (isAppError(error)) {
    const { code, message, retryAfter } = error.data;
    if (code === "RATE_LIMITED" && retryAfter !== undefined) {
      // Retry-After is in whole seconds; the body keeps the ms, as a ConvexError does.
      return jsonResponse(
        HTTP_STATUS_BY_CODE.RATE_LIMITED,
        { code, message, retryAfter },
        { "Retry-After": String(Math.ceil(retryAfter / 1000)) },
      );
    }
    return code in HTTP_STATUS_BY_CODE
      ? errorResponse(code, message)
      : errorResponse("INTERNAL", "Internal error.");
  }
  console.error("Unexpected error in HTTP action", error);
  return errorResponse("INTERNAL", "Internal error.");
}

/** Runs `handler`, answering every thrown error as JSON (see `jsonErrorResponse`). */
export async function withJsonErrors(handler: () => Promise<Response>): Promise<Response> {
  try {
    return await handler();
  } catch (error) {
    return jsonErrorResponse(error);
  }
}

export type JsonObject = Record<string, unknown>;

/**
 * The raw body text (signed webhooks verify it before parsing). Requires
 * `Content-Type: application/json` and at most `maxBytes` bytes of UTF-8.
 */
export async function readRawBody(request: Request, maxBytes: number): Promise<string> {
  const contentType = (request.headers.get("Content-Type") ?? "").split(";")[0].trim();
  if (contentType.toLowerCase() !== "application/json") {
    throw new HttpError("UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json.");
  }
  const tooLarge = () =>
    new HttpError("PAYLOAD_TOO_LARGE", `The body must be at most ${maxBytes} bytes.`);
  if (Number(request.headers.get("Content-Length") ?? "0") > maxBytes) {
    throw tooLarge();
  }
  const text = await request.text();
  if (text.length > maxBytes || new TextEncoder().encode(text).length > maxBytes) {
    throw tooLarge();
  }
  return text;
}

/**
 * Parses a JSON object. Not JSON, not an object (null, an array, a string), or a key given twice
 * in one object (`{"type":"a","type":"b"}`: parsers disagree on which wins) is a 400.
 */
export function parseJsonObject(text: string): JsonObject {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new HttpError("INVALID_ARGUMENT", "The body must be valid JSON.");
  }
  return asJsonObject(body, text);
}

/**
 * `body` (JSON.parse of `text`, by whoever parsed it already) as a JSON object, refused like
 * `parseJsonObject` refuses it: not an object, or a key given twice.
 */
export function asJsonObject(body: unknown, text: string): JsonObject {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new HttpError("INVALID_ARGUMENT", "The body must be a JSON object.");
  }
  const duplicate = findDuplicateKey(text);
  if (duplicate !== null) {
    throw new HttpError(
      "INVALID_ARGUMENT",
      `The body repeats the key ${JSON.stringify(duplicate)}.`,
    );
  }
  return body as JsonObject;
}

/** The first key that appears twice in one object of `text`, which must be valid JSON. */
export function findDuplicateKey(text: string): string | null {
  // One entry per open container: the keys seen so far for an object, null for an array.
  const open: Array<Set<string> | null> = [];
  let expectingKey = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (char === '"') {
      let end = i + 1;
      while (text[end] !== '"') {
        end += text[end] === "\\" ? 2 : 1;
      }
      const keys = open[open.length - 1];
      if (expectingKey && keys) {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        if (keys.has(key)) {
          return key;
        }
        keys.add(key);
      }
      expectingKey = false;
      i = end;
    } else if (char === "{") {
      open.push(new Set());
      expectingKey = true;
    } else if (char === "[") {
      open.push(null);
    } else if (char === "}" || char === "]") {
      open.pop();
    } else if (char === ",") {
      expectingKey = open[open.length - 1] !== null;
    }
  }
  return null;
}

/** The request body as a JSON object (see `readRawBody` and `parseJsonObject`). */
export async function readJsonObject(
  request: Request,
  maxBytes = MAX_JSON_BODY_BYTES,
): Promise<JsonObject> {
  return parseJsonObject(await readRawBody(request, maxBytes));
}

function wrongType(field: string, type: string): never {
  throw new HttpError("INVALID_ARGUMENT", `${field} must be ${type}.`);
}

/** A required string field (checked for type only; the model checks its content). */
export function requireString(body: JsonObject, field: string): string {
  const value = body[field];
  if (value === undefined || value === null) {
    throw new HttpError("INVALID_ARGUMENT", `${field} is required.`);
  }
  return typeof value === "string" ? value : wrongType(field, "a string");
}

/** An optional string field: absent or `null` is `undefined`. */
export function optionalString(body: JsonObject, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  return typeof value === "string" ? value : wrongType(field, "a string");
}

/** An optional number field: absent or `null` is `undefined`. */
export function optionalNumber(body: JsonObject, field: string): number | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  return typeof value === "number" ? value : wrongType(field, "a number");
}

/** An optional boolean field: absent or `null` is `undefined`. */
export function optionalBoolean(body: JsonObject, field: string): boolean | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  return typeof value === "boolean" ? value : wrongType(field, "true or false");
}

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/**
 * Compares two secrets in time independent of where they differ: both are hashed to 32 bytes
 * first, so neither the length nor the content of the expected secret leaks through timing.
 */
export async function constantTimeEqual(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([sha256(a), sha256(b)]);
  let diff = 0;
  for (let i = 0; i < x.length; i++) {
    diff |= x[i] ^ y[i];
  }
  return diff === 0;
}

/**
 * Why a shared secret from the environment cannot be used, or null when it can. Usable means
 * 1 or more printable ASCII characters without spaces (what a Bearer token can carry), not
 * wrapped in quotes: whitespace, control characters, non-ASCII or surrounding quotes are
 * pasting mistakes that no worker's header would match as intended.
 */
export function unusableSecretReason(value: string | undefined): string | null {
  if (value === undefined || value === "") {
    return "it is not set";
  }
  if (value.trim() === "") {
    return "it is only whitespace";
  }
  if (value.length >= 2 && /^(["'`]).*\1$/s.test(value)) {
    return "it is wrapped in quotes";
  }
  if (!/^[\x21-\x7e]+$/.test(value)) {
    return "it contains whitespace, control or non-ASCII characters";
  }
  return null;
}

/** Configuration problems already logged by this isolate (so: once per cold start). */
const loggedConfigProblems = new Set<string>();

function logConfigProblemOnce(envName: string, reason: string): void {
  const key = `${envName}: ${reason}`;
  if (!loggedConfigProblems.has(key)) {
    loggedConfigProblems.add(key);
    console.error(
      `${envName} cannot be used (${reason}); its routes answer 503 until it is fixed.`,
    );
  }
}

/**
 * Checks `Authorization: Bearer <secret>` against the secret `readExpected` returns (an env var's
 * value). Returns the error response to send, or null when the caller is authorised; it never
 * throws, and null comes only from a successful comparison, so a caller cannot fall through
 * into its handler by mistake. Fail-closed:
 * - an unset or unusable secret (see `unusableSecretReason`) refuses everyone with 503
 *   UNAVAILABLE naming `envName` (the reason is logged once per cold start, never the value);
 * - anything thrown while checking (reading the env, hashing) is a 503 too, logged;
 * - a missing or wrong secret is a 401.
 */
export async function checkBearerSecret(
  request: Request,
  readExpected: () => string | undefined,
  envName: string,
): Promise<Response | null> {
  try {
    const expected = readExpected();
    const unusable = unusableSecretReason(expected);
    if (unusable !== null || expected === undefined) {
      logConfigProblemOnce(envName, unusable ?? "it is not set");
      return errorResponse(
        "UNAVAILABLE",
        unusable === "it is not set"
          ? `This endpoint is disabled: the ${envName} environment variable is not set.`
          : `This endpoint is disabled: the ${envName} environment variable is set but cannot be used; see the deployment logs.`,
      );
    }
    const header = request.headers.get("Authorization") ?? "";
    const match = /^Bearer[ ]+(.+)$/i.exec(header.trim());
    if (match === null || !(await constantTimeEqual(match[1], expected))) {
      return errorResponse(
        "UNAUTHENTICATED",
        "Missing or wrong credentials: send Authorization: Bearer <secret>.",
        { "WWW-Authenticate": "Bearer" },
      );
    }
    return null;
  } catch (error) {
    console.error(`Checking ${envName} failed; refusing the request.`, error);
    return errorResponse(
      "UNAVAILABLE",
      "Credentials cannot be checked right now; try again later.",
    );
  }
}
