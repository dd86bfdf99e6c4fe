import { ConvexError } from "convex/values";
// A type-only import: nothing of the backend is bundled. A separate repository copies the type.
import type { ErrorData } from "../convex/lib/errors";

/** The backend's `{ code, message, retryAfter? }`, or null for anything else (network, bug). */
export function errorData(error: unknown): ErrorData | null {
  return error instanceof ConvexError ? (error.data as ErrorData) : null;
}

/** What to tell the user when a mutation or action fails. */
export function describeError(error: unknown): string {
  const data = errorData(error);
  if (data === null) {
    return "Something went wrong. Try again.";
  }
  switch (data.code) {
    case "INSUFFICIENT_CREDITS":
      return "Not enough credits for this video: pick a shorter one or upgrade your plan.";
    case "UNAUTHENTICATED":
      return "Please sign in again.";
    case "INVALID_ARGUMENT":
      // The message names the field ("prompt must be 1–2000 characters.").
      return data.message;
    case "PAYMENT_PROVIDER_ERROR":
      return "The payment provider could not be reached. Nothing was charged; try again.";
    default:
      return data.retryAfter !== undefined
        ? `${data.message} Try again in ${Math.ceil(data.retryAfter / 1000)} s.`
        : data.message;
  }
}

/** Displays an error thrown by `await createJob(...)` etc.; queries throw into error boundaries. */
export function ErrorMessage({ error }: { error: unknown }) {
  return error === null ? null : <p role="alert">{describeError(error)}</p>;
}
