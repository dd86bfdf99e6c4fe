import { ConvexError } from "convex/values";

/** Every expected failure is a ConvexError whose data is `{ code, message }`. */
export type ErrorCode =
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "NOT_FOUND"
  | "INVALID_ARGUMENT"
  | "INSUFFICIENT_CREDITS"
  | "INVALID_TRANSITION"
  | "CONFLICT";

export type ErrorData = { code: ErrorCode; message: string };

export function appError(code: ErrorCode, message: string): ConvexError<ErrorData> {
  return new ConvexError({ code, message });
}

export function isAppError(error: unknown): error is ConvexError<ErrorData> {
  return (
    error instanceof ConvexError &&
    typeof error.data === "object" &&
    error.data !== null &&
    typeof (error.data as ErrorData).code === "string"
  );
}
