import { afterEach, beforeEach, onTestFailed } from "vitest";

/**
 * Keeps `npm test` quiet (vitest.config.ts `setupFiles`): while a test runs, what it or the
 * functions it calls write to the console (webhook outcomes, worker warnings...) is captured
 * here instead of printed. A failing test prints its captured lines after its error, so nothing
 * is lost for debugging; a test that cares what was logged asserts it with `logged()`.
 * Spies a test installs itself (`vi.spyOn(console, "warn")`) wrap the sink and still see every call.
 */

const LEVELS = ["log", "info", "warn", "error", "debug"] as const;
type Level = (typeof LEVELS)[number];
export type LoggedLine = { level: Level; text: string };

let lines: LoggedLine[] = [];
const original = Object.fromEntries(LEVELS.map((level) => [level, console[level]])) as Record<
  Level,
  (...args: unknown[]) => void
>;

function format(args: unknown[]): string {
  return args
    .map((arg) =>
      typeof arg === "string"
        ? arg
        : arg instanceof Error
          ? (arg.stack ?? arg.message)
          : JSON.stringify(arg),
    )
    .join(" ");
}

/** The lines logged so far in the running test, optionally of one level. */
export function logged(level?: Level): string[] {
  return lines.filter((line) => level === undefined || line.level === level).map((l) => l.text);
}

beforeEach(() => {
  lines = [];
  for (const level of LEVELS) {
    console[level] = (...args: unknown[]) => {
      lines.push({ level, text: format(args) });
    };
  }
  onTestFailed(() => {
    for (const { level, text } of lines) {
      original.error(`[${level}] ${text}`);
    }
  });
});

afterEach(() => {
  for (const level of LEVELS) {
    console[level] = original[level];
  }
});
