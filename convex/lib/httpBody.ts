import type { ErrorCode } from "./errors";

/**
 * Strict reading of JSON request bodies for HTTP routes. Refusals carry the HTTP status and the
 * error contract's `{ code, message }`; answer them with `refusalResponse`. Signed webhooks
 * verify the signature over `readBody`'s raw text first, then `parseJsonObject` it.
 */

export type BodyRefusal = {
  ok: false;
  status: 400 | 413 | 415;
  code: ErrorCode;
  message: string;
};

const refuse = (status: BodyRefusal["status"], message: string): BodyRefusal => ({
  ok: false,
  status,
  code: "INVALID_ARGUMENT",
  message,
});

/** Requires `Content-Type: application/json` and at most `maxBytes` of body (UTF-8). */
export async function readBody(
  request: Request,
  maxBytes: number,
): Promise<{ ok: true; text: string } | BodyRefusal> {
  const contentType = (request.headers.get("content-type") ?? "").split(";")[0].trim();
  if (contentType.toLowerCase() !== "application/json") {
    return refuse(415, "Content-Type must be application/json.");
  }
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > maxBytes) {
    return refuse(413, `Body larger than ${maxBytes} bytes.`);
  }
  const text = await request.text();
  if (text.length > maxBytes || new TextEncoder().encode(text).length > maxBytes) {
    return refuse(413, `Body larger than ${maxBytes} bytes.`);
  }
  return { ok: true, text };
}

/**
 * Parses a JSON object. Not JSON, not an object (null, an array, a string) or a key given twice
 * in one object (`{"type":"a","type":"b"}`: parsers disagree on which wins) is a 400.
 */
export function parseJsonObject(
  text: string,
): { ok: true; value: Record<string, unknown> } | BodyRefusal {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return refuse(400, "Body is not valid JSON.");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return refuse(400, "Body must be a JSON object.");
  }
  const duplicate = findDuplicateKey(text);
  if (duplicate !== null) {
    return refuse(400, `Body repeats the key ${JSON.stringify(duplicate)}.`);
  }
  return { ok: true, value: value as Record<string, unknown> };
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

/** A JSON response in the error contract's shape. */
export function refusalResponse(refusal: { status: number; code: ErrorCode; message: string }) {
  return new Response(JSON.stringify({ code: refusal.code, message: refusal.message }), {
    status: refusal.status,
    headers: { "Content-Type": "application/json" },
  });
}
