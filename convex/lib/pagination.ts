import type {
  DocumentByInfo,
  GenericTableInfo,
  OrderedQuery,
  PaginationOptions,
  PaginationResult,
} from "convex/server";
import type { Doc } from "../_generated/dataModel";
import type { QueryCtx } from "../_generated/server";
import { appError } from "./errors";

/** Largest page any list query returns, whatever the client asks for. */
export const MAX_PAGE_SIZE = 100;

function isPositiveWholeNumber(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 1;
}

/**
 * Checks a client's pagination options and caps the page size. `numItems` must be a whole
 * number >= 1 (NaN, Infinity, 0, -3 or 2.5 are INVALID_ARGUMENT; `usePaginatedQuery` never sends
 * them); above 100 it is served as 100. The optional read limits must be whole numbers >= 1 too.
 * An empty string is never a cursor (the first page is `cursor: null`).
 */
export function pageOptions(opts: PaginationOptions): PaginationOptions {
  if (!isPositiveWholeNumber(opts.numItems)) {
    throw appError(
      "INVALID_ARGUMENT",
      "paginationOpts.numItems (or limit) must be a whole number >= 1.",
    );
  }
  for (const field of ["maximumRowsRead", "maximumBytesRead"] as const) {
    const value = opts[field];
    if (value !== undefined && !isPositiveWholeNumber(value)) {
      throw appError("INVALID_ARGUMENT", `paginationOpts.${field} must be a whole number >= 1.`);
    }
  }
  if (opts.cursor === "") {
    throw appError("INVALID_ARGUMENT", "paginationOpts.cursor must be null or a returned cursor.");
  }
  return { ...opts, numItems: Math.min(opts.numItems, MAX_PAGE_SIZE) };
}

/**
 * `query.paginate(page)` (with `page` from `pageOptions`), with a cursor that the query cannot
 * use (made up, or from another query) reported as INVALID_ARGUMENT instead of the database's
 * internal error.
 */
export async function paginateChecked<T extends GenericTableInfo>(
  query: OrderedQuery<T>,
  page: PaginationOptions,
): Promise<PaginationResult<DocumentByInfo<T>>> {
  try {
    return await query.paginate(page);
  } catch (error) {
    if (page.cursor === null && (page.endCursor ?? null) === null) {
      throw error;
    }
    throw appError(
      "INVALID_ARGUMENT",
      "paginationOpts.cursor (or endCursor) is not a cursor returned by this query.",
    );
  }
}

export const DEFAULT_PAGE_SIZE = 20;

/**
 * The first page for a caller that names only a `limit` (default 20, at most 100), as the
 * seed's list calls do; `pageOptions` checks it like any page size.
 */
export function firstPage(limit: number | undefined): PaginationOptions {
  return { numItems: limit ?? DEFAULT_PAGE_SIZE, cursor: null };
}

/** The page a caller without a user row gets: nothing, and nothing more to load. */
export function emptyPage<T>() {
  return { page: [] as T[], isDone: true, continueCursor: "" };
}

/** Tables listed per user, newest first, through a `by_userId` index of ["userId", time]. */
type UserListedTable = "jobs" | "payments" | "ledger";

/**
 * One page of the caller's rows of `table`, newest first (checked options, at most 100 rows);
 * an empty page for a caller without a user row. The list queries the front end holds open.
 */
export async function pageOfUserRows<T extends UserListedTable>(
  ctx: QueryCtx,
  table: T,
  user: Doc<"users"> | null,
  paginationOpts: PaginationOptions,
): Promise<PaginationResult<Doc<T>>> {
  const page = pageOptions(paginationOpts);
  if (user === null) {
    return emptyPage<Doc<T>>();
  }
  // Every listed table has the same index shape; the cast names one of them for the types.
  const rows = ctx.db
    .query(table as "jobs")
    .withIndex("by_userId", (q) => q.eq("userId", user._id))
    .order("desc");
  return (await paginateChecked(rows, page)) as unknown as PaginationResult<Doc<T>>;
}
