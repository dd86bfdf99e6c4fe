import { ConvexError } from "convex/values";

/**
 * Every code a ConvexError of this backend carries (README, "Error contract"). UNAVAILABLE: a
 * service the call needs is not configured here (payments without TrueLayer settings).
 * PAYMENT_PROVIDER_ERROR: the payment provider refused or could not be reached; nothing was
 * charged or refunded. RATE_LIMITED: too many calls (lib/rateLimits.ts); `retryAfter` says in
 * how many ms one goes through.
 */
export const ERROR_CODES = [
  "UNAUTHENTICATED",
  "FORBIDDEN",
  "NOT_FOUND",
  "INVALID_ARGUMENT",
  "INSUFFICIENT_CREDITS",
  "INVALID_TRANSITION",
  "CONFLICT",
  "UNAVAILABLE",
  "PAYMENT_PROVIDER_ERROR",
  "RATE_LIMITED",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/**
 * What every expected failure carries as `ConvexError.data`, for clients too (see
 * docs/frontend.md): `{ code, message }`, plus `retryAfter` (ms to wait before trying again) on
 * the errors that know when a retry can succeed.
 */
export type ErrorData = { code: ErrorCode; message: string; retryAfter?: number };

export function appError(
  code: ErrorCode,
  message: string,
  extra?: Pick<ErrorData, "retryAfter">,
): ConvexError<ErrorData> {
  const data: ErrorData = { code, message };
  if (extra?.retryAfter !== undefined) {
    data.retryAfter = extra.retryAfter;
  }
  return new ConvexError(data);
}

/** RATE_LIMITED, retryable after `retryAfterMs` (rounded up to a whole ms). */
export function rateLimitedError(message: string, retryAfterMs: number): ConvexError<ErrorData> {
  return appError("RATE_LIMITED", message, { retryAfter: Math.max(1, Math.ceil(retryAfterMs)) });
}

export function isAppError(error: unknown): error is ConvexError<ErrorData> {
  return (
    error instanceof ConvexError &&
    typeof error.data === "object" &&
    error.data !== null &&
    typeof (error.data as ErrorData).code === "string"
  );
}
