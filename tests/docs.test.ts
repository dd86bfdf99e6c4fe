/**
 * The docs name everything the code has: error codes and their HTTP statuses, ledger kinds, lot
 * sources, environment variables, crons and their schedules, HTTP statuses of the routes, and
 * every Convex function. Each list is read from the code, so a new code, kind, variable, cron or
 * function fails here until a doc says what it is.
 */
import { describe, expect, test } from "vitest";
import { getFunctionName, type FunctionReference } from "convex/server";
import crons from "../convex/crons";
import { ERROR_CODES } from "../convex/lib/errors";
import { HTTP_STATUS_BY_CODE } from "../convex/lib/http";
import { ledgerKindValidator, lotSourceValidator } from "../convex/lib/validators";
import { discoverFunctions } from "./support/hardening";

const text = (files: Record<string, string>) =>
  Object.fromEntries(
    Object.entries(files).map(([path, body]) => [path.replace(/^\.\.\//, ""), body]),
  );
const docs = text(
  import.meta.glob<string>("../docs/*.md", { query: "?raw", import: "default", eager: true }),
);
const envExample = text(
  import.meta.glob<string>("../.env.example", { query: "?raw", import: "default", eager: true }),
)[".env.example"];
const sources = text(
  import.meta.glob<string>(["../convex/**/*.ts", "!../convex/_generated/**"], {
    query: "?raw",
    import: "default",
    eager: true,
  }),
);

/** The text of a markdown section, from its heading to the next heading of that level or higher. */
function section(markdown: string, heading: string): string {
  const start = markdown.indexOf(`${heading}\n`);
  expect(start, `section "${heading}"`).toBeGreaterThanOrEqual(0);
  const level = heading.indexOf(" ");
  const rest = markdown.slice(start + heading.length);
  const end = rest.search(new RegExp(`\\n#{1,${level}} `));
  return end === -1 ? rest : rest.slice(0, end);
}

/** Table rows (lines starting with `|`) whose first cell names `name` in backticks. */
function rowsNaming(markdown: string, name: string): string[] {
  return markdown
    .split("\n")
    .filter((line) => line.startsWith("|") && line.split("|")[1].includes(`\`${name}\``));
}

const literalsOf = (validator: { members: Array<{ value: unknown }> }) =>
  validator.members.map((member) => String(member.value));

describe("docs name what the code has", () => {
  test("every error code is in the error contract (configuration.md), with its HTTP status", () => {
    const contract = section(docs["docs/configuration.md"], "## Error contract");
    const codes = new Set<string>([...ERROR_CODES, ...Object.keys(HTTP_STATUS_BY_CODE)]);
    const wrong = [...codes].filter((code) => {
      const status = HTTP_STATUS_BY_CODE[code as keyof typeof HTTP_STATUS_BY_CODE];
      const rows = rowsNaming(contract, code);
      return rows.length !== 1 || !rows[0].split("|")[2].includes(String(status));
    });
    expect(wrong, "codes missing from configuration.md's table or with another status").toEqual([]);
  });

  test("every ledger kind and lot source is described in credits.md", () => {
    const kinds = section(docs["docs/credits.md"], "## Ledger kinds");
    expect(
      literalsOf(ledgerKindValidator).filter((kind) => !kinds.includes(`\`${kind}\``)),
    ).toEqual([]);
    const lots = section(docs["docs/credits.md"], "## Where lots come from");
    expect(
      literalsOf(lotSourceValidator).filter((source) => rowsNaming(lots, source).length === 0),
    ).toEqual([]);
  });

  test("every environment variable is in configuration.md's table and in .env.example", () => {
    const names = new Set<string>();
    const nonEnv = new Set<string>(Object.keys(HTTP_STATUS_BY_CODE));
    for (const source of Object.values(sources)) {
      for (const [, name] of source.matchAll(/process\.env\.([A-Z][A-Z0-9_]+)/g)) names.add(name);
      // Variables read by name (`process.env[name]`): the upper-case string literals of that file.
      if (source.includes("process.env[")) {
        for (const [, name] of source.matchAll(/"([A-Z][A-Z0-9]*_[A-Z0-9_]+)"/g)) {
          if (!nonEnv.has(name)) names.add(name);
        }
      }
    }
    // Set by Convex itself on every deployment.
    names.delete("CONVEX_CLOUD_URL");
    names.delete("CONVEX_SITE_URL");
    expect(names.size).toBeGreaterThan(15);
    const table = section(docs["docs/configuration.md"], "## Environment variables");
    expect(
      [...names].filter((name) => rowsNaming(table, name).length === 0),
      "docs/configuration.md",
    ).toEqual([]);
    expect(
      [...names].filter((name) => !new RegExp(`^#? ?${name}=`, "m").test(envExample)),
      ".env.example",
    ).toEqual([]);
  });

  test("every cron is in api.md with its schedule", () => {
    const api = docs["docs/api.md"];
    const jobs = Object.values(crons.crons);
    expect(jobs.length).toBeGreaterThan(5);
    const wrong = jobs.filter(({ name, schedule }) => {
      const fn = getFunctionName(name as unknown as FunctionReference<"mutation">).replace(
        ":",
        ".",
      );
      const rows = rowsNaming(api, fn);
      const pad = (n: number | undefined) => String(n ?? 0).padStart(2, "0");
      let phrase: RegExp;
      if (schedule.type === "interval") {
        const minutes =
          "seconds" in schedule
            ? schedule.seconds / 60
            : "hours" in schedule
              ? schedule.hours * 60
              : schedule.minutes;
        phrase = minutes === 1 ? /every minute/ : new RegExp(`every ${minutes} min`);
      } else if (schedule.type === "hourly") {
        phrase = new RegExp(`hourly.*minute ${schedule.minuteUTC ?? 0}\\b`);
      } else if (schedule.type === "daily") {
        phrase = new RegExp(`daily.*${pad(schedule.hourUTC)}:${pad(schedule.minuteUTC)} UTC`);
      } else {
        return true; // a schedule this test does not know yet: teach it
      }
      return rows.length !== 1 || !/cron/.test(rows[0]) || !phrase.test(rows[0]);
    });
    expect(
      wrong.map((job) => job.name),
      "crons missing from api.md or with another schedule",
    ).toEqual([]);
  });

  test("every status a worker route answers is in worker-protocol.md; every webhook row has the HTTP layer's", () => {
    const table = section(docs["docs/worker-protocol.md"], "## Status codes");
    const statuses = (markdown: string) =>
      new Set([...markdown.matchAll(/^\| (\d{3})\b/gm)].map(([, status]) => Number(status)));
    // Codes of the public functions' rules (credits, access, payments) that no worker route throws.
    const notFromWorkerRoutes = new Set([
      "INSUFFICIENT_CREDITS",
      "FORBIDDEN",
      "PAYMENT_PROVIDER_ERROR",
      // Rate limits apply to users' calls; workers prove the shared secret instead.
      "RATE_LIMITED",
    ]);
    const expected = [
      200,
      204,
      ...Object.entries(HTTP_STATUS_BY_CODE)
        .filter(([code]) => !notFromWorkerRoutes.has(code))
        .map(([, status]) => status),
    ];
    const documented = statuses(table);
    expect([...new Set(expected)].filter((status) => !documented.has(status))).toEqual([]);

    const endpoints = section(docs["docs/payments.md"], "## HTTP endpoints");
    for (const route of ["POST /truelayer/webhook", "POST /clerk/webhook"]) {
      const [row] = rowsNaming(endpoints, route);
      // Every body is read by readRawBody (400, 413, 415) after the signature check (401).
      expect(
        [200, 400, 401, 413, 415, 503].filter((s) => !row.includes(String(s))),
        route,
      ).toEqual([]);
    }
  });

  test("every Convex function is in api.md, and every public one in the access-control table", async () => {
    const api = docs["docs/api.md"];
    const functions = await discoverFunctions();
    const name = (path: string) => path.replace(":", ".");
    expect(
      functions.filter((fn) => !api.includes(`\`${name(fn.path)}\``)).map((fn) => fn.path),
      "functions missing from api.md",
    ).toEqual([]);
    const access = section(api, "## Access control");
    expect(
      functions
        .filter((fn) => fn.visibility === "public")
        .filter((fn) => rowsNaming(access, name(fn.path)).length === 0)
        .map((fn) => fn.path),
      "public functions missing from the access-control table",
    ).toEqual([]);
  });
});
