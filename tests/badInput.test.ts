/**
 * Bad-input corpus: hostile and malformed arguments for every public function (and, through
 * tests/support/httpRoutes.ts, hostile bodies for every HTTP route). Each row says exactly how it must be
 * refused (see `Expectation` in tests/support/hardening.ts):
 * - `rejects.code(...)` / `rejects.invalid(field)`: the handler throws a ConvexError with that
 *   documented code (for INVALID_ARGUMENT, naming the field);
 * - `rejects.validator(/.../)`: a wrong argument *type*, an extra or a missing field, refused by
 *   Convex's argument validator before the handler runs (docs/api.md: "Argument types ... are
 *   rejected by Convex's argument validators before the function runs").
 * After every row the whole database (every table of the schema, plus the scheduler and
 * storage system tables) must be exactly as before.
 *
 * 10 MiB strings: Convex deployments accept function arguments up to their size limit (a
 * 10 MiB string fits), and convex-test applies no argument-size limit at all: the string reaches
 * the handler, which must refuse it itself. The 10 MiB rows therefore expect the handler's
 * INVALID_ARGUMENT (or FORBIDDEN for a clerkId that is not the caller's), and "10 MiB strings
 * reach the handler" below pins that convex-test behaviour.
 *
 * Adding rows for a new function: push them onto CORPUS with `row(...)`; `fn` is checked
 * against the generated api.
 */
import { beforeAll, describe, expect, test } from "vitest";
import { api, internal } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import {
  buildWorld,
  callByPath,
  clientFor,
  describeExpectation,
  discoverFunctions,
  expectRejectedWithoutWrites,
  rejects,
  show,
  snapshotDatabase,
  type Caller,
  type Expectation,
  type PublicPath,
  type World,
} from "./support/hardening";
import { HTTP_ROUTES, checkHostileBody, hostileBodiesFor, routeKey } from "./support/httpRoutes";
import { storeFile } from "./support/setup";

// ---------------------------------------------------------------------------------------------
// The world the corpus runs against: one deployment, shared (no row may write).

type CorpusWorld = World & {
  job: Record<"running" | "done" | "failed" | "canceled" | "expired" | "strangers", Id<"jobs">>;
  deletedJobId: Id<"jobs">;
  deletedUserId: Id<"users">;
  ledgerId: Id<"ledger">;
  planId: Id<"plans">;
  paymentId: Id<"payments">;
  planChangeId: Id<"planChanges">;
  webhookEventId: Id<"webhookEvents">;
  image: Record<"strangers" | "deleted" | "text", Id<"_storage">>;
};

const R2 = "https://videos.example.com/v.mp4";
const KEYED = { prompt: "keyed job", durationSec: 5, idempotencyKey: "corpus-key" } as const;

async function buildCorpusWorld(): Promise<CorpusWorld> {
  const world = await buildWorld();
  const { t } = world;
  const owner = clientFor(world, "owner");
  const create = (prompt: string) => owner.mutation(api.jobs.createJob, { prompt, durationSec: 5 });
  const status = (jobId: Id<"jobs">, to: "running" | "done" | "failed", expiresAt?: number) =>
    t.mutation(internal.jobs.updateJobStatus, { jobId, status: to, r2Url: R2, expiresAt });

  await owner.mutation(api.jobs.createJob, KEYED);
  const running = await create("running");
  await status(running, "running");
  const done = await create("done");
  await status(done, "running");
  await status(done, "done");
  const failed = await create("failed");
  await status(failed, "failed");
  const canceled = await create("canceled");
  await owner.mutation(api.jobs.cancelJob, { jobId: canceled });
  const expired = await create("expired");
  await status(expired, "running");
  await status(expired, "done", Date.now() + 60_000);
  await t.run(async (ctx) => ctx.db.patch("jobs", expired, { expiresAt: Date.now() - 1 }));
  await t.mutation(internal.jobs.expireOldJobs, {});
  const strangers = await clientFor(world, "stranger").mutation(api.jobs.createJob, {
    prompt: "the stranger's job",
    durationSec: 5,
  });
  // Images in file storage: the stranger's (used by a job of theirs), a deleted one, a text file.
  const png = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
  const strangersImage = await storeFile(t, png, "image/png");
  await clientFor(world, "stranger").mutation(api.jobs.createJob, {
    prompt: "the stranger's image job",
    imageStorageId: strangersImage,
    durationSec: 5,
  });
  const deletedImage = await storeFile(t, png, "image/png");
  await t.run((ctx) => ctx.storage.delete(deletedImage));
  const textFile = await storeFile(t, new TextEncoder().encode("not an image"), "text/plain");
  await t.mutation(internal.users.updateUserPlan, {
    userId: world.userId.stranger,
    planName: "creator",
  });

  const ids = await t.run(async (ctx) => {
    const deletedJobId = await ctx.db.insert("jobs", {
      userId: world.userId.owner,
      prompt: "deleted",
      durationSec: 5,
      creditsUsed: 5,
      status: "failed",
      creditStatus: "refunded",
      createdAt: 0,
    });
    await ctx.db.delete("jobs", deletedJobId);
    const deletedUserId = await ctx.db.insert("users", {
      clerkId: "user_gone",
      email: "gone@example.com",
      plan: "starter",
      credits: 0,
      createdAt: 0,
    });
    await ctx.db.delete("users", deletedUserId);
    const paymentId = await ctx.db.insert("payments", {
      userId: world.userId.owner,
      trueLayerTxnId: "tl_corpus",
      amount: 1000,
      creditsAdded: 80,
      creditsPurchased: 80,
      timestamp: 0,
      status: "pending",
      planName: "starter",
      currency: "GBP",
    });
    const webhookEventId = await ctx.db.insert("webhookEvents", {
      provider: "clerk",
      eventId: "evt_corpus",
      type: "user.created",
      receivedAt: 0,
    });
    return {
      deletedJobId,
      deletedUserId,
      paymentId,
      webhookEventId,
      ledgerId: (await ctx.db.query("ledger").first())!._id,
      planId: (await ctx.db.query("plans").first())!._id,
      planChangeId: (await ctx.db.query("planChanges").first())!._id,
    };
  });
  return {
    ...world,
    ...ids,
    job: { running, done, failed, canceled, expired, strangers },
    image: { strangers: strangersImage, deleted: deletedImage, text: textFile },
  };
}

// ---------------------------------------------------------------------------------------------
// The corpus

type CorpusRow = {
  fn: PublicPath;
  label: string;
  /** Who calls (default: the owner), or a raw identity subject. */
  as?: Caller | { subject: string };
  args: (w: CorpusWorld) => unknown;
  expect: Expectation;
};

const CORPUS: CorpusRow[] = [];
const row = (
  fn: PublicPath,
  label: string,
  args: (w: CorpusWorld) => unknown,
  expectation: Expectation,
  as?: CorpusRow["as"],
) => CORPUS.push({ fn, label, args, expect: expectation, as });

const MiB10 = "x".repeat(10 * 1024 * 1024);
const { invalid, validator, code } = rejects;
const expectedType = (type: string) => validator(new RegExp(`Expected \`${type}\``));
const missing = (field: string) => validator(new RegExp(`Missing required field \`${field}\``));
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const extra = (field: string) => validator(new RegExp(`Unexpected field \`${escape(field)}\``));
const idOf = (table: string) => validator(new RegExp(`Expected ID for table "${table}"`));
/** Wrong-type values a client can send over the wire, and what the validator says. */
const wrongTypesFor = (type: "string" | "number") =>
  [
    type === "string" ? 5 : "5",
    null,
    true,
    type === "string" ? ["a"] : [5],
    { value: 1 },
    5n,
    new ArrayBuffer(8),
  ] as const;

// --- jobs:createJob ---------------------------------------------------------------------------
const job = (override: Record<string, unknown>) => () => ({
  prompt: "a cat",
  durationSec: 5,
  ...override,
});
const createJob = (label: string, override: Record<string, unknown>, expectation: Expectation) =>
  row("jobs:createJob", label, job(override), expectation);

for (const prompt of [
  "",
  " ",
  "\t\n\r ",
  "\u00a0\u00a0",
  "\u3000",
  "\u2028\u2029",
  "\ufeff",
  "\u000b\u000c",
]) {
  createJob(`whitespace-only prompt ${show(prompt)}`, { prompt }, invalid("prompt"));
}
for (const prompt of [
  "\u200b",
  "\u200b\u200c\u200d",
  "\u2060",
  "\u202e",
  "\u202a\u202c",
  "\u2066\u2069",
  "\u00ad",
  "\u180e",
  "\u3164",
  "\u115f\u1160",
  "\ufe0f",
  "\u{e0001}\u{e0041}",
  "\u0085",
]) {
  createJob(`invisible-only prompt ${show(prompt)}`, { prompt }, invalid("prompt"));
}
for (const prompt of [
  "\u0000",
  "a\u0000b",
  "cat\u0007",
  "\u001b[31mred\u001b[0m",
  "a\u007fb",
  "a\u0085b",
  "a\u009bb",
]) {
  createJob(`control character in prompt ${show(prompt)}`, { prompt }, invalid("prompt"));
}
for (const prompt of ["\ud800", "a\udc00b", "\udbff\udbff", "cat \ud83d", "\udc00\ud800"]) {
  createJob(`unpaired surrogate in prompt ${show(prompt)}`, { prompt }, invalid("prompt"));
}
for (const prompt of ["x".repeat(2001), "\u{1f600}".repeat(2001), MiB10, "\u200b".repeat(5000)]) {
  createJob(`too long prompt ${show(prompt)}`, { prompt }, invalid("prompt"));
}
for (const prompt of wrongTypesFor("string")) {
  createJob(`prompt of the wrong type ${show(prompt)}`, { prompt }, expectedType("string"));
}
row("jobs:createJob", "prompt missing", () => ({ durationSec: 5 }), missing("prompt"));

for (const durationSec of [
  0,
  -5,
  7,
  16,
  5.5,
  4.999999999,
  5.000000000000001,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  1e308,
  Number.MAX_SAFE_INTEGER,
  Number.MIN_VALUE,
  -0,
]) {
  createJob(`durationSec ${show(durationSec)}`, { durationSec }, invalid("durationSec"));
}
for (const durationSec of wrongTypesFor("number")) {
  createJob(
    `durationSec of the wrong type ${show(durationSec)}`,
    { durationSec },
    expectedType("number"),
  );
}
row("jobs:createJob", "durationSec missing", () => ({ prompt: "a cat" }), missing("durationSec"));

for (const seed of [
  -1,
  1.5,
  4294967296,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  1e308,
  Number.MAX_SAFE_INTEGER,
  -Number.MIN_VALUE,
]) {
  createJob(`seed ${show(seed)}`, { seed }, invalid("seed"));
}
for (const seed of ["42", null, 42n, true]) {
  createJob(`seed of the wrong type ${show(seed)}`, { seed }, expectedType("number"));
}

for (const cfg of [
  0,
  0.999,
  20.0001,
  -1,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  1e308,
  Number.MIN_VALUE,
]) {
  createJob(`cfg ${show(cfg)}`, { cfg }, invalid("cfg"));
}
for (const cfg of ["7", null, []]) {
  createJob(`cfg of the wrong type ${show(cfg)}`, { cfg }, expectedType("number"));
}

for (const imageUrl of [
  "javascript:alert(1)",
  "JaVaScRiPt:alert(document.cookie)",
  " javascript:alert(1)",
  "http://img.example.com/a.png",
  "HTTP://img.example.com/a.png",
  "data:image/png;base64,iVBORw0KGgo=",
  "file:///etc/passwd",
  "ftp://example.com/a.png",
  "blob:https://example.com/0b1c",
  "//img.example.com/a.png",
  "https://",
  "https://:443/a.png",
  "https://exa mple.com/a.png",
  "https://example.com/a.png\n",
  "https://example.com/a\u0000.png",
  "https://example.com/a\u0085.png",
  "https://exa\u202emple.com/a.png",
  "https://example.com/\ud800.png",
  "https://user:pass@example.com/a.png",
  "https://example.com:99999/a.png",
  "https://[::1/a.png",
  "",
  "not a url",
  `https://example.com/${"a".repeat(2030)}`,
  `https://example.com/${MiB10}`,
]) {
  createJob(`imageUrl ${show(imageUrl)}`, { imageUrl }, invalid("imageUrl"));
}
row(
  "jobs:createJob",
  "imageStorageId of another user's image",
  (w) => ({ ...job({})(), imageStorageId: w.image.strangers }),
  code("NOT_FOUND"),
);
row(
  "jobs:createJob",
  "imageStorageId of a deleted file",
  (w) => ({ ...job({})(), imageStorageId: w.image.deleted }),
  code("NOT_FOUND"),
);
row(
  "jobs:createJob",
  "imageStorageId of a text file",
  (w) => ({ ...job({})(), imageStorageId: w.image.text }),
  invalid("imageStorageId"),
);
row(
  "jobs:createJob",
  "both imageUrl and imageStorageId",
  (w) => ({
    ...job({})(),
    imageUrl: "https://img.example.com/a.png",
    imageStorageId: w.image.text,
  }),
  invalid("imageStorageId"),
);
row(
  "jobs:createJob",
  "imageStorageId is a jobs id",
  (w) => ({ ...job({})(), imageStorageId: w.ownerJobId }),
  idOf("_storage"),
);
for (const imageStorageId of ["", "not-an-id", 5, null]) {
  createJob(
    `imageStorageId ${show(imageStorageId)}`,
    { imageStorageId },
    typeof imageStorageId === "string" ? idOf("_storage") : expectedType("string"),
  );
}
for (const imageUrl of [5, null, { href: "https://example.com/a.png" }, ["https://e.com/a.png"]]) {
  createJob(`imageUrl of the wrong type ${show(imageUrl)}`, { imageUrl }, expectedType("string"));
}

for (const idempotencyKey of [
  "",
  "k".repeat(129),
  MiB10,
  "\ud800",
  "key\u0000",
  "key\n",
  "\u001b",
]) {
  createJob(
    `idempotencyKey ${show(idempotencyKey)}`,
    { idempotencyKey },
    invalid("idempotencyKey"),
  );
}
for (const idempotencyKey of [5, null]) {
  createJob(
    `idempotencyKey of the wrong type ${show(idempotencyKey)}`,
    { idempotencyKey },
    expectedType("string"),
  );
}
row(
  "jobs:createJob",
  "idempotencyKey reused for a different prompt",
  () => ({ ...KEYED, prompt: "another prompt" }),
  code("CONFLICT"),
);
row(
  "jobs:createJob",
  "idempotencyKey reused for a different duration",
  () => ({ ...KEYED, durationSec: 10 }),
  code("CONFLICT"),
);

row(
  "jobs:createJob",
  "userId of the stranger",
  (w) => ({ ...job({})(), userId: w.userId.stranger }),
  code("FORBIDDEN"),
);
row(
  "jobs:createJob",
  "userId of the admin",
  (w) => ({ ...job({})(), userId: w.userId.admin }),
  code("FORBIDDEN"),
);
row(
  "jobs:createJob",
  "userId of a deleted document",
  (w) => ({ ...job({})(), userId: w.deletedUserId }),
  code("FORBIDDEN"),
);
row(
  "jobs:createJob",
  "userId of the deleted account",
  (w) => ({ ...job({})(), userId: w.userId.deleted }),
  code("FORBIDDEN"),
);
row(
  "jobs:createJob",
  "userId is a jobs id",
  (w) => ({ ...job({})(), userId: w.ownerJobId }),
  idOf("users"),
);
row(
  "jobs:createJob",
  "userId is a ledger id",
  (w) => ({ ...job({})(), userId: w.ledgerId }),
  idOf("users"),
);
for (const userId of ["", "not-an-id", 5, null]) {
  createJob(
    `userId ${show(userId)}`,
    { userId },
    typeof userId === "string" ? idOf("users") : expectedType("string"),
  );
}
for (const [field, value] of [
  ["status", "done"],
  ["creditsUsed", 0],
  ["credits", 1e9],
  ["_id", "x"],
  ["role", "admin"],
  ["$where", "1"],
] as const) {
  createJob(`extra field ${field}`, { [field]: value }, extra(field));
}
row(
  "jobs:createJob",
  "arguments are an array",
  () => [],
  validator(/plain old JavaScript `object`/),
);

// --- jobs:getJob and jobs:cancelJob -----------------------------------------------------------
const wrongJobIds: Array<[string, (w: CorpusWorld) => unknown, Expectation]> = [
  ["a users id", (w) => w.userId.owner, idOf("jobs")],
  ["a ledger id", (w) => w.ledgerId, idOf("jobs")],
  ["a plans id", (w) => w.planId, idOf("jobs")],
  ["a payments id", (w) => w.paymentId, idOf("jobs")],
  ["a planChanges id", (w) => w.planChangeId, idOf("jobs")],
  ["a webhookEvents id", (w) => w.webhookEventId, idOf("jobs")],
  ["an empty string", () => "", idOf("jobs")],
  ["a made-up id", () => "k57dxh3hbchj5y7z0rdqtkw6hd7ed8b4", idOf("jobs")],
  ["digits only", () => "123", idOf("jobs")],
  ["a number", () => 5, expectedType("string")],
  ["null", () => null, expectedType("string")],
  ["an array of the id", (w) => [w.ownerJobId], expectedType("string")],
];
for (const fn of ["jobs:getJob", "jobs:cancelJob"] as const) {
  for (const [label, jobId, expectation] of wrongJobIds) {
    row(fn, `jobId is ${label}`, (w) => ({ jobId: jobId(w) }), expectation);
  }
  row(fn, "jobId missing", () => ({}), missing("jobId"));
  row(fn, "extra field", (w) => ({ jobId: w.ownerJobId, force: true }), extra("force"));
}
for (const status of ["running", "done", "failed", "expired"] as const) {
  row(
    "jobs:cancelJob",
    `a ${status} job`,
    (w) => ({ jobId: w.job[status] }),
    code("INVALID_TRANSITION"),
  );
}
row("jobs:cancelJob", "a deleted job", (w) => ({ jobId: w.deletedJobId }), code("NOT_FOUND"));
row("jobs:cancelJob", "the stranger's job", (w) => ({ jobId: w.job.strangers }), code("NOT_FOUND"));

// --- paginated queries ------------------------------------------------------------------------
for (const fn of [
  "jobs:listUserJobs",
  "jobs:listJobs",
  "credits:listLedger",
  "credits:listLots",
  "payments:listPayments",
] as const) {
  const page = (opts: Record<string, unknown>, expectation: Expectation, label: string) =>
    row(
      fn,
      label,
      () => ({ paginationOpts: { numItems: 10, cursor: null, ...opts } }),
      expectation,
    );
  for (const numItems of [
    0,
    -1,
    -0,
    2.5,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    1e308,
    2 ** 53,
  ]) {
    page({ numItems }, invalid("numItems"), `numItems ${show(numItems)}`);
  }
  for (const [field, value] of [
    ["maximumRowsRead", 0],
    ["maximumRowsRead", -1],
    ["maximumRowsRead", Number.NaN],
    ["maximumBytesRead", -1],
    ["maximumBytesRead", 1.5],
  ] as const) {
    page({ [field]: value }, invalid(field), `${field} ${show(value)}`);
  }
  // Cursors convex-test cannot decode (a deployment's cursors are opaque: any made-up one fails).
  for (const cursor of ["garbage", "", "null", "123", "{", '["x"]']) {
    page({ cursor }, invalid("cursor"), `bogus cursor ${show(cursor)}`);
  }
  page({ endCursor: "garbage" }, invalid("endCursor"), `bogus endCursor "garbage"`);
  page({ numItems: "10" }, expectedType("number"), `numItems "10"`);
  page({ numItems: 10n }, expectedType("number"), "numItems 10n");
  page({ numItems: null }, expectedType("number"), "numItems null");
  page({ cursor: 5 }, validator(/Expected one of string, null/), "cursor 5");
  page({ cursor: undefined }, missing("cursor"), "cursor missing");
  page({ extra: 1 }, extra("extra"), "extra field in paginationOpts");
  if (fn === "jobs:listUserJobs") {
    // The seed's call: no paginationOpts means the newest page (see the answers below).
    for (const limit of [0, -1, 2.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      row(fn, `limit ${show(limit)}`, () => ({ limit }), invalid("limit"));
    }
    row(
      fn,
      "both paginationOpts and limit",
      () => ({ limit: 5, paginationOpts: { numItems: 5, cursor: null } }),
      invalid("limit"),
    );
    row(fn, "limit as a string", () => ({ limit: "5" }), expectedType("number"));
  } else {
    row(fn, "paginationOpts missing", () => ({}), missing("paginationOpts"));
  }
  row(
    fn,
    "paginationOpts is an array",
    () => ({ paginationOpts: [] }),
    validator(/plain old JavaScript `object`/),
  );
}
// --- payments:createCheckout (TrueLayer is not configured here: the plan is checked first) ----
for (const planName of ["", " ", "enterprise", "STARTER", "starter\u0000", "__proto__", MiB10]) {
  row(
    "payments:createCheckout",
    `planName ${show(planName.slice(0, 20))}`,
    () => ({ planName }),
    code("NOT_FOUND"),
  );
}
for (const planName of wrongTypesFor("string")) {
  row(
    "payments:createCheckout",
    `planName ${show(planName)}`,
    () => ({ planName }),
    expectedType("string"),
  );
}
row("payments:createCheckout", "planName missing", () => ({}), missing("planName"));
row(
  "payments:createCheckout",
  "extra field",
  () => ({ planName: "creator", userId: "x" }),
  extra("userId"),
);

// --- subscriptions (the plan is checked first; the corpus world's users have none) ------------
for (const fn of ["subscriptions:previewChange", "subscriptions:changePlan"] as const) {
  for (const planName of ["", "enterprise", "STARTER", "starter\u0000", "__proto__", MiB10]) {
    row(fn, `planName ${show(planName.slice(0, 20))}`, () => ({ planName }), code("NOT_FOUND"));
  }
  for (const planName of wrongTypesFor("string")) {
    row(fn, `planName ${show(planName)}`, () => ({ planName }), expectedType("string"));
  }
  row(fn, "planName missing", () => ({}), missing("planName"));
  row(fn, "extra field", () => ({ planName: "creator", userId: "x" }), extra("userId"));
}
row(
  "subscriptions:changePlan",
  "no subscription",
  () => ({ planName: "starter" }),
  code("INVALID_TRANSITION"),
);
for (const fn of ["subscriptions:cancel", "subscriptions:resume", "subscriptions:get"] as const) {
  row(fn, "extra field", () => ({ userId: "x" }), extra("userId"));
}
row("subscriptions:cancel", "no subscription", () => ({}), code("INVALID_TRANSITION"));
row("subscriptions:resume", "no subscription", () => ({}), code("INVALID_TRANSITION"));

// --- auto-renewal (the return URI is checked before the feature's setting; it is off here) -----
for (const returnUri of [
  "",
  "not a url",
  "/billing",
  "javascript:alert(1)",
  "http://app.example.com/billing",
  "ftp://app.example.com/",
  `https://app.example.com/${"x".repeat(2048)}`,
  MiB10,
]) {
  row(
    "subscriptions:setUpAutoRenewal",
    `returnUri ${show(returnUri.slice(0, 40))}`,
    () => ({ returnUri }),
    invalid("returnUri"),
  );
}
for (const returnUri of wrongTypesFor("string")) {
  row(
    "subscriptions:setUpAutoRenewal",
    `returnUri ${show(returnUri)}`,
    () => ({ returnUri }),
    expectedType("string"),
  );
}
row(
  "subscriptions:setUpAutoRenewal",
  "feature off (TRUELAYER_MANDATE_TYPE unset)",
  () => ({}),
  code("UNAVAILABLE"),
);
for (const fn of ["subscriptions:setUpAutoRenewal", "subscriptions:cancelAutoRenewal"] as const) {
  row(fn, "extra field", () => ({ userId: "x" }), extra("userId"));
}
// --- notices:setEmailPreferences ---------------------------------------------------------------
for (const creditsExpiring of ["true", "false", 1, 0, null, [true], { value: true }, 5n]) {
  row(
    "notices:setEmailPreferences",
    `creditsExpiring ${show(creditsExpiring)}`,
    () => ({ creditsExpiring }),
    expectedType("boolean"),
  );
}
row(
  "notices:setEmailPreferences",
  "creditsExpiring missing",
  () => ({}),
  missing("creditsExpiring"),
);
row(
  "notices:setEmailPreferences",
  "extra field",
  () => ({ creditsExpiring: false, userId: "x" }),
  extra("userId"),
);

// --- metrics:overview (as an admin, so the argument is what is refused) ----------------------
for (const hours of [0, -1, 721, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 1e308]) {
  row("metrics:overview", `hours ${show(hours)}`, () => ({ hours }), invalid("hours"), "admin");
}
for (const hours of wrongTypesFor("number")) {
  row(
    "metrics:overview",
    `hours ${show(hours)}`,
    () => ({ hours }),
    expectedType("number"),
    "admin",
  );
}
for (const endHour of [
  -3_600_000,
  1,
  3_600_000 + 1,
  0.5,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  2 ** 60,
]) {
  row(
    "metrics:overview",
    `endHour ${show(endHour)}`,
    () => ({ endHour }),
    invalid("endHour"),
    "admin",
  );
}
for (const endHour of wrongTypesFor("number")) {
  row(
    "metrics:overview",
    `endHour ${show(endHour)}`,
    () => ({ endHour }),
    expectedType("number"),
    "admin",
  );
}
row(
  "metrics:overview",
  "extra field",
  () => ({ hours: 24, userId: "x" }),
  extra("userId"),
  "admin",
);

const listJobsOf = (userId: (w: CorpusWorld) => unknown) => (w: CorpusWorld) => ({
  userId: userId(w),
  paginationOpts: { numItems: 10, cursor: null },
});
row(
  "jobs:listUserJobs",
  "userId of the stranger",
  listJobsOf((w) => w.userId.stranger),
  code("FORBIDDEN"),
);
row(
  "jobs:listUserJobs",
  "userId of a deleted document",
  listJobsOf((w) => w.deletedUserId),
  code("FORBIDDEN"),
);
row(
  "jobs:listUserJobs",
  "userId is a jobs id",
  listJobsOf((w) => w.ownerJobId),
  idOf("users"),
);

// --- credits:getCredits -----------------------------------------------------------------------
row(
  "credits:getCredits",
  "userId of the stranger",
  (w) => ({ userId: w.userId.stranger }),
  code("FORBIDDEN"),
);
row(
  "credits:getCredits",
  "userId of the admin",
  (w) => ({ userId: w.userId.admin }),
  code("FORBIDDEN"),
);
row(
  "credits:getCredits",
  "userId of a deleted document",
  (w) => ({ userId: w.deletedUserId }),
  code("FORBIDDEN"),
);
row("credits:getCredits", "userId is a jobs id", (w) => ({ userId: w.ownerJobId }), idOf("users"));
row("credits:getCredits", "userId is an empty string", () => ({ userId: "" }), idOf("users"));
row("credits:getCredits", "userId null", () => ({ userId: null }), expectedType("string"));
row("credits:getCredits", "userId a number", () => ({ userId: 5 }), expectedType("string"));
row("credits:getCredits", "extra field", () => ({ all: true }), extra("all"));

// --- users:getOrCreateUser --------------------------------------------------------------------
const signUpAs = (email: unknown, clerkId?: unknown) => (w: CorpusWorld) => ({
  clerkId: clerkId ?? w.clerkId.owner,
  email,
});
for (const email of [
  "",
  " ",
  "no-at-sign",
  "a@b",
  "a@@example.com",
  "a b@example.com",
  `${"x".repeat(243)}@example.com`,
  MiB10,
  "a\u0000@example.com",
  "a\u200b@example.com",
  "a\u202e@example.com",
  "\ud800@example.com",
  "a@exa\u00admple.com",
]) {
  row("users:getOrCreateUser", `email ${show(email)}`, signUpAs(email), invalid("email"));
}
for (const clerkId of ["user_stranger", "", " user_owner", "user_owner\u0000", MiB10]) {
  row(
    "users:getOrCreateUser",
    `clerkId ${show(clerkId)} (not the caller's)`,
    signUpAs("a@example.com", clerkId),
    code("FORBIDDEN"),
  );
}
// Identities a misconfigured issuer could present: the clerkId check still refuses them.
for (const subject of ["", " user_x", "user_x\u0000", "user\u200bx", "x".repeat(257), "\ud800"]) {
  CORPUS.push({
    fn: "users:getOrCreateUser",
    label: `identity subject ${show(subject)}`,
    as: { subject },
    args: () => ({ clerkId: subject, email: "a@example.com" }),
    expect: invalid("clerkId"),
  });
}
row(
  "users:getOrCreateUser",
  "the deleted account signing up again",
  (w) => ({ clerkId: w.clerkId.deleted, email: "back@example.com" }),
  code("FORBIDDEN"),
  "deleted",
);
row(
  "users:getOrCreateUser",
  "clerkId a number",
  signUpAs("a@example.com", 5),
  expectedType("string"),
);
row("users:getOrCreateUser", "email null", signUpAs(null), expectedType("string"));
row(
  "users:getOrCreateUser",
  "email missing",
  (w) => ({ clerkId: w.clerkId.owner }),
  missing("email"),
);
for (const [field, value] of [
  ["role", "admin"],
  ["credits", 1e9],
  ["plan", "studio"],
] as const) {
  row(
    "users:getOrCreateUser",
    `extra field ${field}`,
    (w) => ({ ...signUpAs("a@example.com")(w), [field]: value }),
    extra(field),
  );
}

// --- jobs:generateImageUploadUrl -------------------------------------------------------------
row(
  "jobs:generateImageUploadUrl",
  "extra field",
  () => ({ contentType: "image/png" }),
  extra("contentType"),
);
row(
  "jobs:generateImageUploadUrl",
  "arguments are an array",
  () => [],
  validator(/plain old JavaScript `object`/),
);
row("jobs:generateImageUploadUrl", "the deleted account", () => ({}), code("FORBIDDEN"), "deleted");
row("jobs:generateImageUploadUrl", "no user row", () => ({}), code("NOT_FOUND"), "unregistered");

// --- users:me, plans --------------------------------------------------------------------------
row("users:me", "extra field", () => ({ userId: "x" }), extra("userId"));
row("users:me", "arguments are an array", () => [], validator(/plain old JavaScript `object`/));
row("plans:listPlans", "extra field", () => ({ all: true }), extra("all"));
for (const name of [5, null, ["starter"]]) {
  row("plans:getPlan", `name ${show(name)}`, () => ({ name }), expectedType("string"));
}
row("plans:getPlan", "name missing", () => ({}), missing("name"));
row("plans:getPlan", "extra field", () => ({ name: "starter", price: 0 }), extra("price"));

// ---------------------------------------------------------------------------------------------

const publicFunctions = (await discoverFunctions()).filter((fn) => fn.visibility === "public");
const kinds = new Map(publicFunctions.map((fn) => [fn.path, fn.kind]));

describe("bad-input corpus", () => {
  let world: CorpusWorld;
  beforeAll(async () => {
    world = await buildCorpusWorld();
  });

  test("has at least 150 rows, each for a public function", () => {
    expect(CORPUS.length).toBeGreaterThanOrEqual(150);
    expect(CORPUS.filter((r) => !kinds.has(r.fn)).map((r) => r.fn)).toEqual([]);
  });

  test("every public function has at least one row", () => {
    const covered = new Set(CORPUS.map((r) => r.fn as string));
    expect(
      publicFunctions.map((fn) => fn.path).filter((path) => !covered.has(path)),
      "public functions without a CORPUS row (tests/badInput.test.ts)",
    ).toEqual([]);
  });

  test.each(
    CORPUS.map((r) => [`${r.fn} ${r.label} → ${describeExpectation(r.expect)}`, r] as const),
  )("%s", async (_name, r) => {
    const fn = { path: r.fn, kind: kinds.get(r.fn)! };
    await expectRejectedWithoutWrites(
      world.t,
      () => callByPath(clientFor(world, r.as ?? "owner"), fn, r.args(world)),
      r.expect,
    );
  });
});

describe("odd input with a documented answer (not an error), writing nothing", () => {
  let world: CorpusWorld;
  beforeAll(async () => {
    world = await buildCorpusWorld();
  });

  const answers: Array<
    [string, (w: CorpusWorld) => Promise<unknown>, (w: CorpusWorld) => unknown]
  > = [
    ...["", "STARTER", "starter ", "starter\u0000", "__proto__", "constructor", MiB10].map(
      (name) =>
        [
          `getPlan ${show(name)} is null`,
          (w: CorpusWorld) => clientFor(w, "owner").query(api.plans.getPlan, { name }),
          () => null,
        ] as [string, (w: CorpusWorld) => Promise<unknown>, () => unknown],
    ),
    [
      "getJob of a deleted job is null",
      (w) => clientFor(w, "owner").query(api.jobs.getJob, { jobId: w.deletedJobId }),
      () => null,
    ],
    [
      "getJob of the stranger's job is null",
      (w) => clientFor(w, "owner").query(api.jobs.getJob, { jobId: w.job.strangers }),
      () => null,
    ],
    [
      "cancelJob of a canceled job changes nothing",
      (w) => clientFor(w, "owner").mutation(api.jobs.cancelJob, { jobId: w.job.canceled }),
      () => ({ changed: false, status: "canceled" }),
    ],
    [
      "listUserJobs without paginationOpts: the newest page (default 20), all 8 of the owner's jobs",
      async (w) => (await clientFor(w, "owner").query(api.jobs.listUserJobs, {})).page.length,
      () => 8,
    ],
    [
      "listUserJobs with only a limit: that many of the newest",
      async (w) =>
        (await clientFor(w, "owner").query(api.jobs.listUserJobs, { limit: 3 })).page.length,
      () => 3,
    ],
    [
      "numItems 1000 is allowed (pages are capped at 100): all 8 of the owner's jobs",
      async (w) =>
        (
          await clientFor(w, "owner").query(api.jobs.listUserJobs, {
            paginationOpts: { numItems: 1000, cursor: null },
          })
        ).page.length,
      () => 8,
    ],
  ];

  test.each(answers)("%s", async (_label, call, expected) => {
    const before = await snapshotDatabase(world.t);
    expect(await call(world)).toEqual(expected(world));
    expect(await snapshotDatabase(world.t)).toStrictEqual(before);
  });

  test("10 MiB strings reach the handler: convex-test applies no argument-size limit", async () => {
    // The handler's own message proves it ran (a size limit would refuse before it).
    const error = await clientFor(world, "owner")
      .mutation(api.jobs.createJob, { prompt: MiB10, durationSec: 5 })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({
      data: { code: "INVALID_ARGUMENT", message: "prompt must be at most 2000 characters." },
    });
  });
});

describe("unusual but legitimate text is accepted", () => {
  test.each(
    [
      "\u{1f3ac} a cat \u{1f63a}",
      "\u{1f469}\u200d\u{1f469}\u200d\u{1f467} a family",
      "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
      "\u05e9\u05dc\u05d5\u05dd \u200f world",
      "\u0928\u092e\u0938\u094d\u0924\u0947",
      "cafe\u0301",
      "line one\nline two\ttabbed\r\n",
      "\u{1f600}".repeat(1000),
    ].map((prompt) => [show(prompt), prompt]),
  )("prompt %s", async (_name, prompt) => {
    const world = await buildWorld();
    const jobId = await clientFor(world, "owner").mutation(api.jobs.createJob, {
      prompt,
      durationSec: 5,
    });
    expect(await clientFor(world, "owner").query(api.jobs.getJob, { jobId })).toMatchObject({
      prompt: prompt.trim(),
    });
  });

  test("an internationalised email address", async () => {
    const world = await buildWorld();
    const as = world.t.withIdentity({ subject: "user_intl", issuer: "https://clerk.test" });
    expect(
      await as.mutation(api.users.getOrCreateUser, {
        clerkId: "user_intl",
        email: "Jos\u00e9@Ex\u00e4mple.com",
      }),
    ).toMatchObject({ email: "jos\u00e9@ex\u00e4mple.com" });
  });
});

// ---------------------------------------------------------------------------------------------
// HTTP routes: hostile bodies with valid credentials

describe("HTTP routes: hostile bodies are a 4xx JSON error that writes nothing", () => {
  for (const route of HTTP_ROUTES) {
    test(`${routeKey(route.method, route.path)}`, async () => {
      const world = await buildWorld();
      for (const hostile of hostileBodiesFor(world, route)) {
        await checkHostileBody(world, route, hostile);
      }
    });
  }
});
