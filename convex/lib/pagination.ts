import type { PaginationOptions } from "convex/server";

/** Largest page any list query returns, whatever the client asks for. */
export const MAX_PAGE_SIZE = 100;

export function clampPage(opts: PaginationOptions): PaginationOptions {
  return {
    ...opts,
    numItems: Math.max(1, Math.min(Math.floor(opts.numItems) || 1, MAX_PAGE_SIZE)),
  };
}

/** The page a caller without a user row gets: nothing, and nothing more to load. */
export function emptyPage<T>() {
  return { page: [] as T[], isDone: true, continueCursor: "" };
}
