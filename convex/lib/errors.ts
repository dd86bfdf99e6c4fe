import { ConvexError } from "convex/values";

/** Every expected failure is a ConvexError whose data is `{ code, message }`. */
export type ErrorCode =
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "NOT_FOUND"
  | "INVALID_ARGUMENT"
  | "INSUFFICIENT_CREDITS"
  | "INVALID_TRANSITION"
  | "CONFLICT"
  /** A service the call needs is not configured here (payments without TrueLayer settings). */
  | "UNAVAILABLE"
  /** The payment provider refused or could not be reached; nothing was charged or refunded. */
  | "PAYMENT_PROVIDER_ERROR"
  /** Too many calls (lib/rateLimits.ts); `retryAfter` says in how many ms one goes through. */
  | "RATE_LIMITED";

/** `retryAfter` (ms) only with `RATE_LIMITED`. */
export type ErrorData = { code: ErrorCode; message: string; retryAfter?: number };

export function appError(code: ErrorCode, message: string): ConvexError<ErrorData> {
  return new ConvexError({ code, message });
}

/** RATE_LIMITED, retryable after `retryAfterMs` (rounded up to a whole ms). */
export function rateLimitedError(message: string, retryAfterMs: number): ConvexError<ErrorData> {
  return new ConvexError({
    code: "RATE_LIMITED",
    message,
    retryAfter: Math.max(1, Math.ceil(retryAfterMs)),
  });
}

export function isAppError(error: unknown): error is ConvexError<ErrorData> {
  return (
    error instanceof ConvexError &&
    typeof error.data === "object" &&
    error.data !== null &&
    typeof (error.data as ErrorData).code === "string"
  );
}
