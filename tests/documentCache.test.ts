import { expect, test } from "vitest";
import { cachingWriter } from "../convex/lib/documentCache";
import { setup, signUp } from "./support/setup";

/** The per-transaction document cache every mutation reads through (lib/triggers.ts). */
test("a document is read once per transaction, and the cache follows the transaction's own writes", async () => {
  const t = await setup();
  const { userId } = await signUp(t, "user_1");
  await t.run(async (ctx) => {
    const db = cachingWriter(ctx.db);
    const read = async () => (await ctx.meta.getTransactionMetrics()).documentsRead.used;
    const start = await read();
    const first = (await db.get("users", userId))!;
    expect(await read()).toBe(start + 1);
    // A returned document is a copy: changing it changes neither the cache nor the database.
    first.credits = -1;
    expect((await db.get("users", userId))!.credits).not.toBe(-1);
    expect(await read()).toBe(start + 1);
    // A patch is applied to the cached document as the database applies it (undefined removes).
    await db.patch("users", userId, { credits: 7, nextExpiry: undefined });
    const afterPatch = await read();
    const cached = await db.get("users", userId);
    expect(await read()).toBe(afterPatch);
    expect(cached).toEqual(await ctx.db.get("users", userId));
    expect(cached!.credits).toBe(7);
    expect("nextExpiry" in cached!).toBe(false);
    // A replace keeps the system fields; a delete caches the document's absence.
    const { _id, _creationTime, ...fields } = cached!;
    await db.replace("users", userId, { ...fields, email: "new@example.com" });
    expect(await db.get("users", userId)).toEqual(await ctx.db.get("users", userId));
    expect((await db.get("users", userId))!._creationTime).toBe(_creationTime);
    expect(_id).toBe(userId);
    await db.delete("users", userId);
    expect(await db.get("users", userId)).toBeNull();
  });
});
