import type { GenericDatabaseWriter } from "convex/server";
import type { DataModel } from "../_generated/dataModel";

type Writer = GenericDatabaseWriter<DataModel>;
type AnyDoc = Record<string, unknown> & { _id: string; _creationTime: number };
// The cache forwards each call with its own arguments, whichever overload the caller used.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyFn = (...args: any[]) => Promise<any>;

/**
 * `db` with a per-transaction cache of the documents it has read by id: a second `get` of the
 * same document (the caller's user row, re-read by the ledger; the document a trigger reads
 * before and after a patch) is answered from memory instead of reading it again. Writes through
 * this writer keep the cache exact: a patch or replace updates the cached document the way the
 * database applies it, a delete caches its absence, an insert is read on first `get`. Index
 * queries are not cached (they always read the database, which includes this transaction's
 * writes). Every write of the transaction must go through this writer, which holds for a
 * mutation's `ctx.db` (triggers included: they write through it too); mutations do not nest.
 * Callers get copies, so changing a returned document does not change the cache.
 */
export function cachingWriter(db: Writer): Writer {
  const cache = new Map<string, AnyDoc | null>();
  const inner = db as unknown as Record<"get" | "patch" | "replace" | "delete", AnyFn>;
  /** The table-name forms put the id second; the legacy forms take it first. */
  const idOf = (args: unknown[], arity: number) =>
    (args.length === arity ? args[1] : args[0]) as string;
  const copy = (doc: AnyDoc | null) => (doc === null ? null : structuredClone(doc));

  const get: AnyFn = async (...args: unknown[]) => {
    const id = idOf(args, 2);
    if (cache.has(id)) {
      return copy(cache.get(id)!);
    }
    const doc = (await inner.get(...args)) as AnyDoc | null;
    cache.set(id, copy(doc));
    return doc;
  };
  const patch: AnyFn = async (...args: unknown[]) => {
    await inner.patch(...args);
    const id = idOf(args, 3);
    const cached = cache.get(id);
    if (cached === undefined || cached === null) {
      cache.delete(id);
      return;
    }
    const value = args[args.length - 1] as Record<string, unknown>;
    const next: AnyDoc = { ...cached };
    for (const [field, fieldValue] of Object.entries(structuredClone(value))) {
      if (fieldValue === undefined) {
        delete next[field];
      } else {
        next[field] = fieldValue;
      }
    }
    cache.set(id, next);
  };
  const replace: AnyFn = async (...args: unknown[]) => {
    await inner.replace(...args);
    const id = idOf(args, 3);
    const cached = cache.get(id);
    if (cached === undefined || cached === null) {
      cache.delete(id);
      return;
    }
    const fields = Object.fromEntries(
      Object.entries(structuredClone(args[args.length - 1] as Record<string, unknown>)).filter(
        ([field, fieldValue]) =>
          fieldValue !== undefined && field !== "_id" && field !== "_creationTime",
      ),
    );
    cache.set(id, { ...fields, _id: cached._id, _creationTime: cached._creationTime });
  };
  const delete_: AnyFn = async (...args: unknown[]) => {
    await inner.delete(...args);
    cache.set(idOf(args, 2), null);
  };
  return {
    get,
    patch,
    replace,
    delete: delete_,
    insert: db.insert.bind(db),
    query: db.query.bind(db),
    normalizeId: db.normalizeId.bind(db),
    system: db.system,
  } as unknown as Writer;
}
