import { compareValues, jsonToConvex, type Value } from "convex/values";
import schema from "../convex/schema";

/**
 * Read sets and write sets of convex-test function runs, to measure what a live query costs:
 * which subscriptions a write invalidates, and what their re-runs read.
 *
 * A Convex subscription re-runs when a committed write touches its last run's read set: a
 * document it fetched by id, or an index range it read. A range read is recorded as far as the
 * query actually read it: the whole range when the query ran to its end, otherwise up to (and
 * including) the last document it took, in its own order (a `take(k)` that stopped at the k-th
 * row does not depend on the rows after it); a paginated read from its cursor (exclusive) to the
 * page's end. A write touches a range when the document's key in that index, before or after
 * the write, lies inside it.
 *
 * How: convex-test answers the Convex runtime's syscalls (`Convex.syscall` /
 * `Convex.asyncSyscall`); this wraps that global once (after the first `convexTest()` installed
 * it) and, while a recording is open, notes every database syscall: `get`, `queryStream` +
 * `queryStreamNext`, `queryPage`, and the writes `insert`, `shallowMerge`, `replace`, `remove`.
 * It works under both vitest configs (no convex-test internals). Outside a recording it only
 * passes calls through. For a write it fetches the document before the first write (its
 * committed version) and after each write (one extra `get` syscall each, which the measured
 * transaction counts as a read; the live-cost cases do not use the writer's own metrics).
 *
 * Documents read are counted as convex-test's metrics count them: every document a `get`
 * returns, every row a query stream yields, every row of a page.
 */

type Doc = { _id: string; _creationTime: number } & Record<string, Value | undefined>;
type RangeFilter = {
  type: "Eq" | "Gt" | "Gte" | "Lt" | "Lte";
  fieldPath: string;
  value: Value | undefined;
};
type Bound = { key: Array<Value | undefined>; op: "lt" | "lte" | "gt" | "gte" };

/** One index range read (or a whole table, for scans), possibly cut short by `bounds`. */
export type RangeRead = {
  table: string;
  index: string;
  range: RangeFilter[];
  bounds: Bound[];
};

export type ReadSet = { docs: Set<string>; ranges: RangeRead[]; documentsRead: number };
export type Write = { table: string; before: Doc | null; after: Doc | null };
export type WriteSet = Map<string, Write>;

type SourceJson =
  | { type: "IndexRange"; indexName: string; range: RangeFilter[]; order?: "asc" | "desc" }
  | { type: "FullTableScan"; tableName: string; order?: "asc" | "desc" }
  | { type: "Search"; indexName: string };
type QueryJson = { source: SourceJson; operators: unknown[] };

type Recording = {
  reads: ReadSet;
  writes: WriteSet;
  streams: Map<number, Stream>;
};

/** An open query stream: its range, order, `limit` operator and how many rows it yielded. */
type Stream = { read: RangeRead; order: "asc" | "desc"; limit: number | null; taken: number };

let recording: Recording | null = null;

/** Write syscalls per document while `countWrites` runs (read sets are not recorded then). */
let counting: Map<string, { table: string; writes: number }> | null = null;

const WRITE_OPS = new Set(["1.0/insert", "1.0/shallowMerge", "1.0/replace", "1.0/remove"]);

function countWrite(op: string, args: string, result: string): void {
  if (counting === null || !WRITE_OPS.has(op)) {
    return;
  }
  const parsed = JSON.parse(args) as { table?: string; id?: string };
  const id =
    op === "1.0/insert" ? (JSON.parse(result) as { _id: string })._id : (parsed.id as string);
  const table = parsed.table ?? tableOfId(id).replace(/^\W+/, "");
  const entry = counting.get(id) ?? { table, writes: 0 };
  entry.writes += 1;
  counting.set(id, entry);
}

type ConvexGlobal = {
  syscall: (op: string, args: string) => string;
  asyncSyscall: (op: string, args: string) => Promise<string>;
  jsSyscall: (op: string, args: unknown) => unknown;
  __readSets?: true;
};

/** The index's key fields as Convex orders rows: its fields, then `_creationTime`, `_id`. */
function indexFields(table: string, index: string): string[] {
  if (index === "by_id") {
    return ["_id"];
  }
  if (index === "by_creation_time") {
    return ["_creationTime", "_id"];
  }
  const definition = (
    schema.tables as unknown as Record<
      string,
      { export(): { indexes: Array<{ indexDescriptor: string; fields: string[] }> } }
    >
  )[table];
  const found = definition?.export().indexes.find((i) => i.indexDescriptor === index);
  if (found === undefined) {
    throw new Error(`bench/readSets.ts: unknown index ${table}.${index}`);
  }
  return [...found.fields, "_creationTime", "_id"];
}

function fieldPath(doc: Doc, path: string): Value | undefined {
  let value: unknown = doc;
  for (const part of path.split(".")) {
    value =
      value !== null && typeof value === "object"
        ? (value as Record<string, unknown>)[part]
        : undefined;
  }
  return value as Value | undefined;
}

function keyOf(doc: Doc, fields: string[]): Array<Value | undefined> {
  return fields.map((field) => fieldPath(doc, field));
}

function compareKeys(a: Array<Value | undefined>, b: Array<Value | undefined>): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = compareValues(a[i], b[i]);
    if (c !== 0) {
      return c;
    }
  }
  return 0;
}

function decode(value: unknown): Value | undefined {
  return value === undefined ? undefined : jsonToConvex(value as never);
}

function rangeOf(source: SourceJson): RangeRead {
  if (source.type === "IndexRange") {
    const [table, index] = source.indexName.split(".");
    return {
      table,
      index,
      range: source.range.map((f) => ({ ...f, value: decode(f.value) })),
      bounds: [],
    };
  }
  if (source.type === "FullTableScan") {
    return { table: source.tableName, index: "by_creation_time", range: [], bounds: [] };
  }
  // A search reads the whole table as far as this measurement is concerned.
  return {
    table: source.indexName.split(".")[0],
    index: "by_creation_time",
    range: [],
    bounds: [],
  };
}

/** Whether the document lies in the range read (by its key in that range's index). */
function inRange(doc: Doc, read: RangeRead): boolean {
  const fields = indexFields(read.table, read.index);
  for (const filter of read.range) {
    const c = compareValues(fieldPath(doc, filter.fieldPath), filter.value);
    const ok =
      filter.type === "Eq"
        ? c === 0
        : filter.type === "Gt"
          ? c > 0
          : filter.type === "Gte"
            ? c >= 0
            : filter.type === "Lt"
              ? c < 0
              : c <= 0;
    if (!ok) {
      return false;
    }
  }
  const key = keyOf(doc, fields);
  return read.bounds.every(({ key: bound, op }) => {
    const c = compareKeys(key, bound);
    return op === "lt" ? c < 0 : op === "lte" ? c <= 0 : op === "gt" ? c > 0 : c >= 0;
  });
}

function tableOfId(id: string): string {
  return id.replace(/^[0-9]+/, "");
}

/** Whether a committed write set re-runs a subscription whose last run read `reads`. */
export function invalidates(writes: WriteSet, reads: ReadSet): boolean {
  for (const [id, write] of writes) {
    if (reads.docs.has(id)) {
      return true;
    }
    for (const read of reads.ranges) {
      if (read.table !== write.table) {
        continue;
      }
      if (
        (write.before !== null && inRange(write.before, read)) ||
        (write.after !== null && inRange(write.after, read))
      ) {
        return true;
      }
    }
  }
  return false;
}

function parseCursor(cursor: string): Array<Value | undefined> {
  return (JSON.parse(cursor) as Array<string | null>).map((k) =>
    k === null ? undefined : jsonToConvex(JSON.parse(k) as never),
  );
}

function docFromJson(json: unknown): Doc | null {
  return json === null || json === undefined ? null : (jsonToConvex(json as never) as Doc);
}

function install(): ConvexGlobal {
  const g = globalThis as unknown as { Convex?: ConvexGlobal };
  const inner = g.Convex;
  if (inner === undefined) {
    throw new Error("bench/readSets.ts: create a convexTest() deployment first");
  }
  if (inner.__readSets) {
    return inner;
  }
  const wrapper: ConvexGlobal = {
    __readSets: true,
    get jsSyscall() {
      return inner.jsSyscall;
    },
    syscall: (op, args) => {
      const result = inner.syscall(op, args);
      if (recording !== null && op === "1.0/queryStream") {
        const { query } = JSON.parse(args) as { query: QueryJson };
        const { queryId } = JSON.parse(result) as { queryId: number };
        const read = rangeOf(query.source);
        const order = "order" in query.source ? (query.source.order ?? "asc") : "asc";
        const limit = query.operators.find(
          (operator): operator is { limit: number } =>
            typeof operator === "object" && operator !== null && "limit" in operator,
        );
        recording.streams.set(queryId, { read, order, limit: limit?.limit ?? null, taken: 0 });
        recording.reads.ranges.push(read);
      }
      return result;
    },
    asyncSyscall: async (op, args) => {
      const rec = recording;
      if (rec === null) {
        const result = await inner.asyncSyscall(op, args);
        countWrite(op, args, result);
        return result;
      }
      const parsed = JSON.parse(args) as Record<string, unknown>;
      const fetch = async (table: string, id: string) =>
        docFromJson(JSON.parse(await inner.asyncSyscall("1.0/get", JSON.stringify({ table, id }))));
      const isWrite = op === "1.0/shallowMerge" || op === "1.0/replace" || op === "1.0/remove";
      if (isWrite) {
        const id = parsed.id as string;
        if (!rec.writes.has(id)) {
          const table = (parsed.table as string | undefined) ?? tableOfId(id);
          rec.writes.set(id, { table, before: await fetch(table, id), after: null });
        }
      }
      const result = await inner.asyncSyscall(op, args);
      const answer = JSON.parse(result) as Record<string, unknown>;
      switch (op) {
        case "1.0/get": {
          rec.reads.docs.add(parsed.id as string);
          if (answer !== null) {
            rec.reads.documentsRead += 1;
          }
          break;
        }
        case "1.0/queryStreamNext": {
          const stream = rec.streams.get(parsed.queryId as number);
          if (stream !== undefined) {
            const { value, done } = answer as { value: unknown; done: boolean };
            if (done) {
              // The end of the range, unless the stream stopped at its `limit` (`take(n)`,
              // `first()`, `unique()`): then it read up to its last row only.
              if (stream.limit === null || stream.taken < stream.limit) {
                stream.read.bounds = [];
              }
            } else {
              rec.reads.documentsRead += 1;
              stream.taken += 1;
              const last = docFromJson(value)!;
              const fields = indexFields(stream.read.table, stream.read.index);
              // Read up to here (inclusive) so far, in the query's order.
              stream.read.bounds = [
                { key: keyOf(last, fields), op: stream.order === "asc" ? "lte" : "gte" },
              ];
            }
          }
          break;
        }
        case "1.0/queryPage": {
          const { query, cursor, endCursor } = parsed as {
            query: QueryJson;
            cursor: string | null;
            endCursor?: string | null;
          };
          const { page, isDone, continueCursor } = answer as {
            page: unknown[];
            isDone: boolean;
            continueCursor: string;
          };
          rec.reads.documentsRead += page.length;
          const read = rangeOf(query.source);
          const asc = !("order" in query.source) || (query.source.order ?? "asc") === "asc";
          if (cursor === "_end_cursor") {
            break; // past the end: nothing read
          }
          if (cursor !== null) {
            read.bounds.push({ key: parseCursor(cursor), op: asc ? "gt" : "lt" });
          }
          const end =
            endCursor !== undefined && endCursor !== null && endCursor !== "_end_cursor"
              ? endCursor
              : isDone
                ? null
                : continueCursor;
          if (end !== null) {
            read.bounds.push({ key: parseCursor(end), op: asc ? "lte" : "gte" });
          }
          rec.reads.ranges.push(read);
          break;
        }
        case "1.0/insert": {
          const id = (answer as { _id: string })._id;
          const table = parsed.table as string;
          rec.writes.set(id, { table, before: null, after: await fetch(table, id) });
          break;
        }
        default:
          if (isWrite) {
            const id = parsed.id as string;
            const write = rec.writes.get(id)!;
            write.after = op === "1.0/remove" ? null : await fetch(write.table, id);
          }
      }
      return result;
    },
  };
  g.Convex = wrapper;
  return wrapper;
}

/** Runs `fn` (one convex-test call) and returns what it read and wrote. */
export async function record<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; reads: ReadSet; writes: WriteSet }> {
  install();
  if (recording !== null) {
    throw new Error("bench/readSets.ts: recordings do not nest");
  }
  const rec: Recording = {
    reads: { docs: new Set(), ranges: [], documentsRead: 0 },
    writes: new Map(),
    streams: new Map(),
  };
  recording = rec;
  try {
    const result = await fn();
    return { result, reads: rec.reads, writes: rec.writes };
  } finally {
    recording = null;
  }
}

/**
 * Runs `fn` (convex-test calls) and returns how many write syscalls (insert, patch, replace,
 * delete) each document took, with its table.
 */
export async function countWrites<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; writes: Map<string, { table: string; writes: number }> }> {
  install();
  if (counting !== null || recording !== null) {
    throw new Error("bench/readSets.ts: write counts do not nest");
  }
  const writes = new Map<string, { table: string; writes: number }>();
  counting = writes;
  try {
    return { result: await fn(), writes };
  } finally {
    counting = null;
  }
}

/** A live query: how to run it, and the read set of its last run. */
export type Subscription = { run: () => Promise<unknown>; reads: ReadSet };

export async function subscribe(run: () => Promise<unknown>): Promise<Subscription> {
  return { run, reads: (await record(run)).reads };
}

export type LiveCost = {
  /** Subscriptions held when the write ran. */
  subscriptions: number;
  /** Documents the write inserted, changed or deleted. */
  documentsWritten: number;
  /** Subscriptions whose read set the write touched: each re-runs. */
  invalidated: number;
  /** Documents their re-runs read, in all. */
  rerunReads: number;
};

/**
 * Runs one write (a committed mutation), then re-runs every subscription it invalidated, as the
 * Convex sync engine would, recording their new read sets (`onChecked` hears each verdict).
 */
export async function liveCost(
  subscriptions: Subscription[],
  write: () => Promise<unknown>,
  onChecked?: (subscription: Subscription, invalidated: boolean) => void,
): Promise<LiveCost> {
  const { writes } = await record(write);
  let invalidated = 0;
  let rerunReads = 0;
  for (const subscription of subscriptions) {
    const hit = invalidates(writes, subscription.reads);
    onChecked?.(subscription, hit);
    if (hit) {
      invalidated += 1;
      subscription.reads = (await record(subscription.run)).reads;
      rerunReads += subscription.reads.documentsRead;
    }
  }
  return {
    subscriptions: subscriptions.length,
    documentsWritten: writes.size,
    invalidated,
    rerunReads,
  };
}
