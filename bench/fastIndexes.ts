import * as convexTestModule from "convex-test";

/**
 * Real indexes for convex-test's in-memory database, for the benchmark only. They change how
 * fast a query is answered, never what it returns nor what a transaction is measured to cost.
 *
 * Why: convex-test answers every query by listing the ids of the whole database (every table),
 * filtering the table's rows through the index range and sorting them: each query costs time
 * in proportion to the whole database, however few rows it returns. A worker sweep's
 * transaction runs about 100 queries; with a 100,000-row backlog convex-test took 3.2 s per
 * transaction (58 ms with these indexes), so one 1,000-transaction drain took about an hour.
 * (The costs the benchmark measures do not depend on it: convex-test counts the documents a
 * query streams and the documents a `get` returns, in code this file does not touch.)
 *
 * What: per database and per index that a query uses, an array of the committed rows in index
 * order (the index fields, then `_creationTime` and `_id`, as convex-test sorts them), built on
 * first use and kept up to date as top-level transactions commit. An index range query takes the
 * matching run of that array by binary search, merges in the rows the open transaction wrote
 * (checked with convex-test's own range filter), and hands convex-test the same sorted rows its
 * scan would have produced. Queries it does not cover (full table scans, `.filter()`, search)
 * go to convex-test's own code, with the whole-database id listing replaced by a per-table one.
 *
 * Checked: `setIndexCheck(true)` answers every query both ways and throws on any difference
 * (the runner does this for the smallest N, so every query shape of every case is compared).
 * `setFastIndexes(false)` restores convex-test's behaviour entirely.
 *
 * `vitest.bench.config.ts` exports the internals used here from convex-test's module when
 * vitest loads it (a load-time transform; nothing in node_modules changes).
 */

type Value = unknown;
type Doc = { _id: string } & Record<string, unknown>;
type Write = Doc | null;
type RangeFilter = { type: "Eq" | "Gt" | "Gte" | "Lt" | "Lte"; fieldPath: string; value: unknown };
type Query = {
  source:
    | { type: "IndexRange"; indexName: string; range: RangeFilter[]; order?: "asc" | "desc" }
    | { type: "FullTableScan" | "Search"; tableName?: string; indexName?: string };
  operators: Array<Record<string, unknown>>;
};
type Resolved = {
  sortedDocs: Doc[];
  filterFn: (doc: Doc) => boolean;
  limit: number | null;
  fieldPathsToSortBy: string[];
  order: "asc" | "desc";
};
type Entry = { keys: Value[]; id: string; doc: Doc };
type Index = { fields: string[]; entries: Entry[]; keysById: Map<string, Value[]> };
type TableState = { ids: Set<string>; indexes: Map<string, Index> };
type Db = {
  _documents: Record<string, Doc>;
  _writes: Array<Record<string, Write>>;
  _schema: {
    tables: Map<string, { indexes: Array<{ indexDescriptor: string; fields: string[] }> }>;
  } | null;
  __bench?: { generation: number; tables: Map<string, TableState> };
  get(tableName: string, id: string): Doc | null;
};
type Prototype = {
  _iterateDocs(this: Db, tableName: string, callback: (doc: Doc) => void): void;
  _resolveQuerySource(this: Db, query: Query): Resolved;
  commit(this: Db, commitTs?: unknown): void;
};
type Internals = {
  __benchDatabaseFake: { prototype: Prototype };
  __benchEvaluateFieldPath: (fieldPath: string, doc: Doc) => Value;
  __benchEvaluateQueryValue: (value: unknown) => Value;
  __benchEvaluateRangeFilter: (doc: Doc, filter: RangeFilter) => boolean;
  __benchValidateIndexRangeExpression: (source: Query["source"], fields: string[]) => void;
  __benchCompareValues: (a: Value, b: Value) => number;
};

const internals = convexTestModule as unknown as Partial<Internals>;
if (internals.__benchDatabaseFake === undefined) {
  throw new Error(
    "convex-test's internals are not exported: run the benchmark with vitest.bench.config.ts.",
  );
}
const {
  __benchDatabaseFake: DatabaseFake,
  __benchEvaluateFieldPath: evaluateFieldPath,
  __benchEvaluateQueryValue: evaluateQueryValue,
  __benchEvaluateRangeFilter: evaluateRangeFilter,
  __benchValidateIndexRangeExpression: validateIndexRangeExpression,
  __benchCompareValues: compareValues,
} = internals as Internals;

const proto = DatabaseFake.prototype;
const original = {
  iterateDocs: proto._iterateDocs,
  resolveQuerySource: proto._resolveQuerySource,
  commit: proto.commit,
};

/** The table an id belongs to: convex-test ids are digits followed by the table name. */
function tableOf(id: string): string | null {
  const match = /^[0-9]+/.exec(id);
  return match === null || match[0].length === id.length ? null : id.slice(match[0].length);
}

/** `tableOf(id) === table`, without a regular expression in the common case of another table. */
function isInTable(id: string, table: string): boolean {
  return id.endsWith(table) && tableOf(id) === table;
}

function compareKeys(a: Value[], b: Value[]): number {
  for (let i = 0; i < a.length; i++) {
    const c = compareValues(a[i], b[i]);
    if (c !== 0) {
      return c;
    }
  }
  return 0;
}

function keysOf(fields: string[], doc: Doc): Value[] {
  return fields.map((field) => evaluateFieldPath(field, doc));
}

/** The first position in `entries` for which `isAfter` holds (`isAfter` must be monotone). */
function firstWhere(entries: Entry[], isAfter: (entry: Entry) => boolean): number {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (isAfter(entries[mid])) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

/** Bumped when the indexes are turned off: commits stop maintaining them, so they are dropped. */
let generation = 0;

function tables(db: Db): Map<string, TableState> {
  if (db.__bench?.generation !== generation) {
    const byTable = new Map<string, TableState>();
    for (const id of Object.keys(db._documents)) {
      const table = tableOf(id);
      if (table !== null) {
        tableState(byTable, table).ids.add(id);
      }
    }
    db.__bench = { generation, tables: byTable };
  }
  return db.__bench.tables;
}

function tableState(byTable: Map<string, TableState>, table: string): TableState {
  let state = byTable.get(table);
  if (state === undefined) {
    state = { ids: new Set(), indexes: new Map() };
    byTable.set(table, state);
  }
  return state;
}

/** The index's fields as convex-test sorts by them, or null for an undeclared index. */
function indexFields(db: Db, tableName: string, indexName: string): string[] | null {
  if (indexName === "by_creation_time") {
    return ["_creationTime", "_id"];
  }
  if (indexName === "by_id") {
    return ["_id"];
  }
  const index = db._schema?.tables
    .get(tableName)
    ?.indexes.find(({ indexDescriptor }) => indexDescriptor === indexName);
  return index === undefined ? null : index.fields.concat(["_creationTime", "_id"]);
}

function committedIndex(db: Db, tableName: string, indexName: string, fields: string[]): Index {
  const state = tableState(tables(db), tableName);
  let index = state.indexes.get(indexName);
  if (index === undefined) {
    const entries: Entry[] = [];
    for (const id of state.ids) {
      const doc = db._documents[id];
      entries.push({ keys: keysOf(fields, doc), id, doc });
    }
    entries.sort((a, b) => compareKeys(a.keys, b.keys));
    index = { fields, entries, keysById: new Map(entries.map((e) => [e.id, e.keys])) };
    state.indexes.set(indexName, index);
  }
  return index;
}

/**
 * Where a row stands against an index range (eq on a prefix of the fields, then at most a
 * lower and an upper bound on the next one; convex-test validates that shape): -1 before the
 * matching run, 0 inside it, 1 after it. The first failing condition decides, as the fields
 * are compared in index order.
 */
function sideOf(
  entry: Entry,
  range: Array<{ type: RangeFilter["type"]; at: number; value: Value }>,
) {
  for (const { type, at, value } of range) {
    const c = compareValues(entry.keys[at], value);
    switch (type) {
      case "Eq":
        if (c !== 0) {
          return c < 0 ? -1 : 1;
        }
        break;
      case "Gt":
        if (c <= 0) {
          return -1;
        }
        break;
      case "Gte":
        if (c < 0) {
          return -1;
        }
        break;
      case "Lt":
        if (c >= 0) {
          return 1;
        }
        break;
      case "Lte":
        if (c > 0) {
          return 1;
        }
        break;
    }
  }
  return 0;
}

function indexedResolveQuerySource(this: Db, query: Query): Resolved {
  const { source } = query;
  if (source.type !== "IndexRange" || query.operators.some((operator) => "filter" in operator)) {
    return original.resolveQuerySource.call(this, query);
  }
  const [tableName, indexName] = source.indexName.split(".");
  const fields = indexFields(this, tableName, indexName);
  if (fields === null) {
    return original.resolveQuerySource.call(this, query);
  }
  validateIndexRangeExpression(source, fields);
  const order = source.order ?? "asc";
  const index = committedIndex(this, tableName, indexName, fields);
  const range = source.range.map((filter) => ({
    type: filter.type,
    at: fields.indexOf(filter.fieldPath),
    value: evaluateQueryValue(filter.value),
  }));
  const start = firstWhere(index.entries, (entry) => sideOf(entry, range) >= 0);
  const end = firstWhere(index.entries, (entry) => sideOf(entry, range) > 0);
  let matched: Entry[] = index.entries.slice(start, end);

  // Rows written by the open transaction levels replace their committed versions.
  const pending = new Set<string>();
  for (const level of this._writes) {
    for (const id of Object.keys(level)) {
      if (isInTable(id, tableName)) {
        pending.add(id);
      }
    }
  }
  if (pending.size > 0) {
    matched = matched.filter((entry) => !pending.has(entry.id));
    for (const id of pending) {
      const doc = this.get(tableName, id);
      if (doc !== null && source.range.every((filter) => evaluateRangeFilter(doc, filter))) {
        matched.push({ keys: keysOf(fields, doc), id, doc });
      }
    }
    matched.sort((a, b) => compareKeys(a.keys, b.keys));
  }
  const docs = matched.map((entry) => entry.doc);
  if (order === "desc") {
    // Keys end with `_id`, so no two rows tie: descending order is the exact reverse.
    docs.reverse();
  }
  const limit = query.operators.find((operator) => "limit" in operator) as
    { limit: number } | undefined;
  return {
    sortedDocs: docs,
    filterFn: () => true,
    limit: limit?.limit ?? null,
    fieldPathsToSortBy: fields,
    order,
  };
}

let checking = false;

function checkedResolveQuerySource(this: Db, query: Query): Resolved {
  const fast = indexedResolveQuerySource.call(this, query);
  const slow = original.resolveQuerySource.call(this, query);
  // The same document objects in the same order (filters, if any, are convex-test's own).
  const same =
    fast.sortedDocs.length === slow.sortedDocs.length &&
    fast.sortedDocs.every((doc, i) => doc === slow.sortedDocs[i]) &&
    fast.sortedDocs.every((doc) => fast.filterFn(doc) === slow.filterFn(doc)) &&
    fast.limit === slow.limit &&
    fast.order === slow.order &&
    fast.fieldPathsToSortBy.join() === slow.fieldPathsToSortBy.join();
  if (!same) {
    throw new Error(
      `bench/fastIndexes.ts answered a query differently from convex-test: ${JSON.stringify(query)}`,
    );
  }
  return slow;
}

/** Convex-test's scan, over the table's ids only (same ids, same order as its whole listing). */
function perTableIterateDocs(this: Db, tableName: string, callback: (doc: Doc) => void): void {
  const ids = new Set(tableState(tables(this), tableName).ids);
  for (const level of this._writes) {
    for (const id of Object.keys(level)) {
      if (isInTable(id, tableName)) {
        ids.add(id);
      }
    }
  }
  for (const id of ids) {
    const document = this.get(tableName, id);
    if (document !== null) {
      callback(document);
    }
  }
}

function indexedCommit(this: Db, commitTs?: unknown): void {
  // Only the outermost level's commit reaches `_documents`.
  const toDocuments = this._writes.length === 1 ? this._writes[0] : null;
  original.commit.call(this, commitTs);
  if (toDocuments === null || this.__bench?.generation !== generation) {
    return;
  }
  const byTable = new Map<string, string[]>();
  for (const id of Object.keys(toDocuments)) {
    const table = tableOf(id);
    if (table !== null) {
      const ids = byTable.get(table) ?? [];
      ids.push(id);
      byTable.set(table, ids);
    }
  }
  for (const [table, ids] of byTable) {
    const state = tableState(this.__bench.tables, table);
    for (const index of state.indexes.values()) {
      updateIndex(this, index, ids);
    }
    for (const id of ids) {
      if (this._documents[id] === undefined) {
        state.ids.delete(id);
      } else {
        state.ids.add(id);
      }
    }
  }
}

/** Moves the committed rows `ids` (inserted, changed or deleted) to their place in `index`. */
function updateIndex(db: Db, index: Index, ids: string[]): void {
  // Keys are unique (they end with `_id`): an old entry is found by binary search on its keys.
  const removed: number[] = [];
  for (const id of ids) {
    const oldKeys = index.keysById.get(id);
    if (oldKeys !== undefined) {
      const at = firstWhere(index.entries, (e) => compareKeys(e.keys, oldKeys) >= 0);
      if (index.entries[at]?.id !== id) {
        throw new Error(`bench/fastIndexes.ts: the index entry of ${id} is missing`);
      }
      removed.push(at);
      index.keysById.delete(id);
    }
  }
  const fresh: Entry[] = [];
  for (const id of ids) {
    const committed = db._documents[id];
    if (committed !== undefined) {
      fresh.push({ keys: keysOf(index.fields, committed), id, doc: committed });
      index.keysById.set(id, fresh[fresh.length - 1].keys);
    }
  }
  fresh.sort((a, b) => compareKeys(a.keys, b.keys));
  if (removed.length + fresh.length <= 8) {
    // A few rows: splice them out and in.
    removed.sort((a, b) => b - a);
    for (const at of removed) {
      index.entries.splice(at, 1);
    }
    for (const entry of fresh) {
      const at = firstWhere(index.entries, (e) => compareKeys(e.keys, entry.keys) > 0);
      index.entries.splice(at, 0, entry);
    }
    return;
  }
  // Many rows: one copying pass, positions found by binary search.
  removed.sort((a, b) => a - b);
  const kept: Entry[] = [];
  let from = 0;
  for (const at of removed) {
    copy(index.entries, from, at, kept);
    from = at + 1;
  }
  copy(index.entries, from, index.entries.length, kept);
  const merged: Entry[] = [];
  from = 0;
  for (const entry of fresh) {
    const at = firstWhere(kept, (e) => compareKeys(e.keys, entry.keys) > 0);
    copy(kept, from, at, merged);
    merged.push(entry);
    from = at;
  }
  copy(kept, from, kept.length, merged);
  index.entries = merged;
}

function copy(source: Entry[], from: number, to: number, target: Entry[]): void {
  for (let i = from; i < to; i++) {
    target.push(source[i]);
  }
}

/** Turns the indexes on (the default) or off (convex-test's own whole-database scans). */
export function setFastIndexes(on: boolean): void {
  if (!on) {
    generation++;
  }
  proto._iterateDocs = on ? perTableIterateDocs : original.iterateDocs;
  proto._resolveQuerySource = on
    ? checking
      ? checkedResolveQuerySource
      : indexedResolveQuerySource
    : original.resolveQuerySource;
  proto.commit = on ? indexedCommit : original.commit;
}

/** While on, every query is answered both ways and any difference throws. */
export function setIndexCheck(on: boolean): void {
  checking = on;
  setFastIndexes(true);
}

setFastIndexes(true);
