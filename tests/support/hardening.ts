/// <reference types="vite/client" />
/**
 * Shared by the access-control matrix and the bad-input corpus: discovery of every registered
 * Convex function from the modules, a seeded "world" with one user per kind of caller, calling a
 * function by its path as any caller, whole-database snapshots and the rejection helper.
 */
import {
  makeFunctionReference,
  type FunctionReference,
  type FunctionType,
  type FunctionVisibility,
} from "convex/server";
import { ConvexError } from "convex/values";
import { expect } from "vitest";
import { api, internal } from "../../convex/_generated/api";
import type { Id, TableNames } from "../../convex/_generated/dataModel";
import type { ErrorCode } from "../../convex/lib/errors";
import { anonymiseUser } from "../../convex/model/users";
import schema from "../../convex/schema";
import { identityFor, modules, newConvex, signUp, type TestConvex } from "./setup";

// ---------------------------------------------------------------------------------------------
// Function discovery

/** "module:name" of every function in a generated api object (`api` or `internal`). */
type PathsOf<T, Module extends string> = {
  [K in keyof T & string]: T[K] extends FunctionReference<FunctionType, FunctionVisibility>
    ? `${Module}:${K}`
    : PathsOf<T[K], Module extends "" ? K : `${Module}/${K}`>;
}[keyof T & string];

/** Every public function as the generated `api` types know it, e.g. "jobs:createJob". */
export type PublicPath = PathsOf<typeof api, "">;
/** Every internal function as the generated `internal` types know it. */
export type InternalPath = PathsOf<typeof internal, "">;

export type FunctionKind = "query" | "mutation" | "action";

export type RegisteredFunction = {
  /** "module:name", the path `api` and `npx convex run` use. */
  path: string;
  kind: FunctionKind;
  visibility: "public" | "internal" | "unknown";
};

type RegistrationFlags = {
  isQuery?: boolean;
  isMutation?: boolean;
  isAction?: boolean;
  isPublic?: boolean;
  isInternal?: boolean;
};

/**
 * Every query, mutation and action exported by a module under convex/ (not `_generated`),
 * found from the flags Convex's registration puts on the exported object (`isQuery`,
 * `isMutation`, `isAction`, `isPublic`, `isInternal`): the same flags the deployment reads to
 * decide what a client may call. Nothing here is a hand-kept list.
 */
export async function discoverFunctions(): Promise<RegisteredFunction[]> {
  const found: RegisteredFunction[] = [];
  for (const [file, load] of Object.entries(modules)) {
    // convex.config.ts is the component definition, evaluated at push, never a functions module.
    if (
      file.includes("/_generated/") ||
      file.endsWith(".d.ts") ||
      file.endsWith("/convex.config.ts")
    ) {
      continue;
    }
    const modulePath = file.replace(/^(\.\.\/)+convex\//, "").replace(/\.ts$/, "");
    const exports = (await load()) as Record<string, unknown>;
    for (const [name, value] of Object.entries(exports)) {
      if ((typeof value !== "function" && typeof value !== "object") || value === null) {
        continue;
      }
      const flags = value as RegistrationFlags;
      const kind: FunctionKind | null = flags.isQuery
        ? "query"
        : flags.isMutation
          ? "mutation"
          : flags.isAction
            ? "action"
            : null;
      if (kind === null) {
        continue;
      }
      const visibility =
        flags.isPublic === true && flags.isInternal !== true
          ? "public"
          : flags.isInternal === true && flags.isPublic !== true
            ? "internal"
            : "unknown";
      found.push({ path: `${modulePath}:${name}`, kind, visibility });
    }
  }
  return found.sort((a, b) => a.path.localeCompare(b.path));
}

// ---------------------------------------------------------------------------------------------
// Callers and the seeded world

/**
 * Who calls. `owner` owns the resources the arguments point at; `stranger` is another
 * signed-up user; `admin` a third user with `role: "admin"`; `unregistered` is signed in with
 * Clerk but has no user row yet; `deleted` is an account Clerk deleted (anonymised).
 */
export const CALLERS = [
  "anonymous",
  "unregistered",
  "stranger",
  "owner",
  "admin",
  "deleted",
] as const;
export type Caller = (typeof CALLERS)[number];

export type World = {
  t: TestConvex;
  clerkId: Record<Exclude<Caller, "anonymous">, string>;
  userId: Record<"owner" | "stranger" | "admin" | "deleted", Id<"users">>;
  /** A queued job of the owner (5 credits held). */
  ownerJobId: Id<"jobs">;
  /** A running job of the owner, claimed by worker "gpu-1" (lease of 10 minutes). */
  runningJobId: Id<"jobs">;
};

/**
 * A fresh deployment (or `t`, e.g. one with other modules): plans seeded, one user per caller,
 * the owner with one queued job.
 */
export async function buildWorld(deployment?: TestConvex): Promise<World> {
  const t = deployment ?? newConvex();
  await t.mutation(internal.plans.seedPlans, {});
  const clerkId = {
    unregistered: "user_unregistered",
    stranger: "user_stranger",
    owner: "user_owner",
    admin: "user_admin",
    deleted: "user_deleted",
  };
  const owner = await signUp(t, clerkId.owner);
  const stranger = await signUp(t, clerkId.stranger);
  const admin = await signUp(t, clerkId.admin);
  const deleted = await signUp(t, clerkId.deleted);
  await t.mutation(internal.users.setRole, { userId: admin.userId, role: "admin" });
  // What the Clerk webhook does on user.deleted.
  await t.run(async (ctx) => {
    await anonymiseUser(ctx, clerkId.deleted);
  });
  // A job of the owner's that worker "gpu-1" is running (claimed before the queued one exists).
  const runningJobId = await owner.as.mutation(api.jobs.createJob, {
    prompt: "the owner's running job",
    durationSec: 5,
  });
  await t.mutation(internal.worker.claimJob, { workerId: "gpu-1" });
  const ownerJobId = await owner.as.mutation(api.jobs.createJob, {
    prompt: "the owner's job",
    durationSec: 5,
  });
  return {
    t,
    clerkId,
    userId: {
      owner: owner.userId,
      stranger: stranger.userId,
      admin: admin.userId,
      deleted: deleted.userId,
    },
    ownerJobId,
    runningJobId,
  };
}

/** The client for a caller, or for a raw identity subject (`{ subject }`). */
export function clientFor(world: World, caller: Caller | { subject: string }) {
  if (caller === "anonymous") {
    return world.t;
  }
  const subject = typeof caller === "string" ? world.clerkId[caller] : caller.subject;
  return world.t.withIdentity(identityFor(subject));
}

/** Calls a function by its path ("jobs:createJob") as `kind` says. */
export async function callByPath(
  client: ReturnType<typeof clientFor>,
  fn: { path: string; kind: FunctionKind },
  args: unknown,
): Promise<unknown> {
  const input = args as Record<string, unknown>;
  switch (fn.kind) {
    case "query":
      return await client.query(makeFunctionReference<"query">(fn.path), input);
    case "mutation":
      return await client.mutation(makeFunctionReference<"mutation">(fn.path), input);
    case "action":
      return await client.action(makeFunctionReference<"action">(fn.path), input);
  }
}

// ---------------------------------------------------------------------------------------------
// Snapshots and rejections

/**
 * Every document of every table in the schema (names from `schema.tables`), plus the system
 * tables a function can write to (`_scheduled_functions`, `_storage`).
 */
export async function snapshotDatabase(t: TestConvex) {
  const tables = Object.keys(schema.tables) as TableNames[];
  return await t.run(async (ctx) => {
    const snapshot: Record<string, unknown[]> = {};
    for (const table of tables) {
      snapshot[table] = await ctx.db.query(table).collect();
    }
    snapshot._scheduled_functions = await ctx.db.system.query("_scheduled_functions").collect();
    snapshot._storage = await ctx.db.system.query("_storage").collect();
    return snapshot;
  });
}

/**
 * How a call must be refused:
 * - `{ code, field? }`: the handler threw a ConvexError with this documented code (and, for
 *   `field`, a message naming it);
 * - `{ validator: /.../ }`: Convex's argument validator rejected the arguments before the
 *   handler ran. convex-test reports that as a plain Error "Validator error: ..." (a deployment
 *   says "ArgumentValidationError"); the pattern pins which check fired.
 */
export type Expectation = { code: ErrorCode; field?: string } | { validator: RegExp };

export const rejects = {
  code: (code: ErrorCode, field?: string): Expectation => ({ code, field }),
  invalid: (field: string): Expectation => ({ code: "INVALID_ARGUMENT", field }),
  validator: (pattern: RegExp): Expectation => ({ validator: pattern }),
};

export function describeExpectation(expectation: Expectation): string {
  return "code" in expectation
    ? expectation.code + (expectation.field ? ` (${expectation.field})` : "")
    : `validator ${expectation.validator.source}`;
}

export function assertRejection(error: unknown, expectation: Expectation) {
  if ("code" in expectation) {
    expect(error, `expected ConvexError ${expectation.code}, got ${String(error)}`).toBeInstanceOf(
      ConvexError,
    );
    const data = (error as ConvexError<{ code: string; message: string }>).data;
    expect(data.code).toBe(expectation.code);
    expect(typeof data.message).toBe("string");
    if (expectation.field !== undefined) {
      expect(data.message).toContain(expectation.field);
    }
  } else {
    expect(error).toBeInstanceOf(Error);
    expect(error, "an argument-validator rejection is not a ConvexError").not.toBeInstanceOf(
      ConvexError,
    );
    const message = (error as Error).message;
    expect(message.slice(0, 300)).toMatch(/^Validator error: /);
    expect(message.slice(0, 300)).toMatch(expectation.validator);
  }
}

/**
 * Runs `call`, which must be refused as `expectation` says, and checks that the database is
 * exactly as before: every document of every table, compared with `toStrictEqual`.
 */
export async function expectRejectedWithoutWrites(
  t: TestConvex,
  call: () => Promise<unknown>,
  expectation: Expectation,
) {
  const before = await snapshotDatabase(t);
  const outcome = await call().then(
    (value: unknown) => ({ resolved: true as const, value }),
    (error: unknown) => ({ resolved: false as const, error }),
  );
  if (outcome.resolved) {
    expect.fail(
      `expected a rejection (${describeExpectation(expectation)}) but the call returned ` +
        (JSON.stringify(outcome.value) ?? "undefined").slice(0, 200),
    );
  }
  assertRejection(outcome.error, expectation);
  expect(await snapshotDatabase(t), "the database changed").toStrictEqual(before);
}

/** A short, escaped rendering of a hostile value for test names. */
export function show(value: unknown): string {
  if (typeof value === "string") {
    if (value.length > 64) {
      const size =
        value.length >= 1024 * 1024
          ? `${(value.length / (1024 * 1024)).toFixed(0)} MiB`
          : `${value.length} chars`;
      return `${show(value.slice(0, 8))}… (${size})`;
    }
    return JSON.stringify(value).replace(
      /[^\x20-\x7e]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
    );
  }
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "number") return Object.is(value, -0) ? "-0" : String(value);
  if (value instanceof ArrayBuffer) return `ArrayBuffer(${value.byteLength})`;
  if (value === undefined) return "undefined";
  const json = JSON.stringify(value);
  return json.length > 64 ? `${json.slice(0, 60)}…` : json;
}
