import { isWellFormed } from "./text";

/** URL checks for what users and workers send (pure: no database, no network). */

export const URL_MAX_LENGTH = 2048;

/**
 * An absolute https URL of at most 2048 characters: no whitespace or control characters, no
 * unpaired surrogates (the URL parser would silently turn them into U+FFFD) and no
 * `user:password@` part (credentials must not be stored with a job).
 */
function parseHttpsUrl(value: string): URL | null {
  if (
    value.length > URL_MAX_LENGTH ||
    /[\s\u0000-\u001f\u007f-\u009f]/.test(value) ||
    !isWellFormed(value)
  ) {
    return null;
  }
  try {
    const url = new URL(value);
    const ok =
      url.protocol === "https:" &&
      url.hostname.length > 0 &&
      url.username === "" &&
      url.password === "";
    return ok ? url : null;
  } catch {
    return null;
  }
}

/** An absolute https URL without whitespace or credentials, at most 2048 characters. */
export function isHttpsUrl(value: string): boolean {
  return parseHttpsUrl(value) !== null;
}

const PRIVATE_IPV4 = [
  /^0\./, // "this network"
  /^10\./,
  /^127\./, // loopback
  /^169\.254\./, // link-local, cloud metadata endpoints
  /^172\.(1[6-9]|2\d|3[01])\./,
  /^192\.168\./,
  /^100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\./, // carrier-grade NAT
];
const INTERNAL_NAME = /(^|\.)(localhost|local|internal|localdomain|home\.arpa)\.?$/i;

/**
 * An https URL the GPU workers may fetch for the user: not a loopback, private, link-local or
 * metadata address and not an internal host name, so a job cannot point our workers at our own
 * network (server-side request forgery). Names that merely resolve privately are the workers'
 * fetcher's to refuse; this rejects what can be seen in the URL.
 */
export function isPublicHttpsUrl(value: string): boolean {
  const url = parseHttpsUrl(value);
  if (url === null) {
    return false;
  }
  const host = url.hostname;
  if (host.startsWith("[")) {
    return false; // IPv6 literals: loopback, ULA and mapped forms are not worth telling apart
  }
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) {
    return !PRIVATE_IPV4.some((range) => range.test(host));
  }
  return !INTERNAL_NAME.test(host) && host.includes(".");
}
