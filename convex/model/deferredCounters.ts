/**
 * Deferred counters, shared by the subscription gauges (subscriptionTotals.ts) and the hourly
 * buckets (metricsBucketDeltas.ts): a counted change inserts a delta row instead of writing a
 * shared counter (inserts never conflict), a per-minute fold adds a batch of deltas to the
 * counters and deletes them, and readers add the deltas not folded yet, up to a limit.
 */

/** Deltas a fold adds per transaction (one read and one delete each). */
export const FOLD_BATCH = 500;
/**
 * Unfolded deltas a reader (`metrics.overview`) adds in: about a minute of changes on a quiet
 * deployment. Past it the answer says it is not exact until the fold has caught up.
 */
export const PENDING_READ_LIMIT = 16;

/**
 * The unfolded deltas a reader adds in: the first PENDING_READ_LIMIT of the query, and one more
 * to know whether others wait. `pending`: the deltas read (PENDING_READ_LIMIT + 1 means more
 * wait); `exact`: every unfolded delta is in `rows`.
 */
export async function readPendingDeltas<T>(query: {
  take(n: number): Promise<T[]>;
}): Promise<{ rows: T[]; pending: number; exact: boolean }> {
  const read = await query.take(PENDING_READ_LIMIT + 1);
  return {
    rows: read.slice(0, PENDING_READ_LIMIT),
    pending: read.length,
    exact: read.length <= PENDING_READ_LIMIT,
  };
}
