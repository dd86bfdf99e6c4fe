import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, test, vi } from "vitest";
import {
  CASES,
  MAIN,
  SMALL_CONSTANT,
  type BenchCase,
  type CronStep,
  type Deployment,
} from "./cases";
import { setFastIndexes, setIndexCheck } from "./fastIndexes";
import { lineChart } from "./png";
import { judge, markdownTable, summariseCron, type CaseResult, type Sample } from "./report";
import type { BenchEnv } from "./seed";

/**
 * `npm run bench`: seeds N = 1,000 / 10,000 / 100,000 rows, measures every case of
 * bench/cases.ts at each N, prints the table and `flat: yes|no` per function, writes
 * bench/results.json and bench/results.png, and fails (non-zero exit) on any `no`.
 * `BENCH_NS=1000,10000` runs other sizes (the acceptance compares the smallest and largest).
 *
 * Each N builds one deployment at a time (the main one, then each cron backlog's own), runs
 * its cases and drops it before the next, so memory holds one deployment.
 *
 * convex-test gets real indexes (bench/fastIndexes.ts): a speed-up that changes no result. At
 * the smallest N every query is also answered by convex-test's own scan and compared
 * (`BENCH_INDEX_CHECK=all` compares at every N, slowly; `BENCH_FAST_INDEXES=0` turns the
 * indexes off altogether, which takes hours at N = 100,000).
 */
const NS = (process.env.BENCH_NS ?? "1000,10000,100000").split(",").map(Number);
const FAST_INDEXES = process.env.BENCH_FAST_INDEXES !== "0";
const INDEX_CHECK_ALL = process.env.BENCH_INDEX_CHECK === "all";
/** A fixed "now" (mid-hour, UTC) so every run buckets the same way. */
const NOW = Date.UTC(2025, 5, 2, 12, 30);
const out = (file: string) => fileURLToPath(new URL(file, import.meta.url));

beforeAll(() => {
  // Frozen clock; scheduled functions (a draining cron re-scheduling itself) never fire on
  // their own: the runner drives each cron step itself so it can measure every transaction.
  // (`performance` stays real: it times the run.)
  vi.useFakeTimers({
    toFake: ["Date", "setTimeout", "clearTimeout", "setInterval", "clearInterval", "setImmediate"],
  });
  vi.setSystemTime(NOW);
});
afterAll(() => {
  vi.useRealTimers();
});

function log(line = "") {
  process.stdout.write(`${line}\n`);
}

async function runCase(benchCase: BenchCase, env: BenchEnv): Promise<Sample> {
  if (benchCase.kind === "call") {
    return { cost: await benchCase.run(env) };
  }
  const backlog = benchCase.backlog(env);
  const steps: CronStep[] = [];
  // A generous cap so a step that never finishes fails instead of hanging.
  const maxSteps = backlog + 10;
  let step: CronStep;
  do {
    step = await benchCase.step(env);
    steps.push(step);
  } while (step.more && steps.length < maxSteps);
  return summariseCron(steps, backlog);
}

test(
  "every function's cost stays flat as tables grow",
  async () => {
    const started = performance.now();
    const byCase = new Map<string, Record<string, Sample>>();
    const seeded: Record<string, Record<string, Record<string, number>>> = {};
    const timings: Record<string, { seedMs: number; casesMs: number }> = {};
    // Deployments in the order their first case appears; each case runs in table order.
    const deployments: Deployment[] = [];
    for (const benchCase of CASES) {
      const deployment = benchCase.deployment ?? MAIN;
      if (!deployments.includes(deployment)) {
        deployments.push(deployment);
      }
    }
    for (const n of NS) {
      if (FAST_INDEXES) {
        setIndexCheck(INDEX_CHECK_ALL || n === NS[0]);
      } else {
        setFastIndexes(false);
      }
      let seedMs = 0;
      let casesMs = 0;
      seeded[n] = {};
      for (const deployment of deployments) {
        const seedStart = performance.now();
        const env = await deployment.seed(n, NOW);
        const seedTook = performance.now() - seedStart;
        seedMs += seedTook;
        seeded[n][deployment.name] = env.rows;
        const casesStart = performance.now();
        for (const benchCase of CASES.filter((c) => (c.deployment ?? MAIN) === deployment)) {
          const caseStart = performance.now();
          const sample = await runCase(benchCase, env);
          sample.ms = Math.round(performance.now() - caseStart);
          byCase.set(benchCase.name, { ...byCase.get(benchCase.name), [n]: sample });
        }
        const casesTook = performance.now() - casesStart;
        casesMs += casesTook;
        log(
          `N=${n} ${deployment.name}: seeded ${JSON.stringify(env.rows)} in ` +
            `${(seedTook / 1000).toFixed(1)} s, cases in ${(casesTook / 1000).toFixed(1)} s`,
        );
      }
      timings[n] = { seedMs: Math.round(seedMs), casesMs: Math.round(casesMs) };
    }

    const results: CaseResult[] = CASES.map((benchCase) =>
      judge(benchCase, byCase.get(benchCase.name)!, NS),
    );
    const wallMs = Math.round(performance.now() - started);

    log();
    log(markdownTable(results, NS));
    log();
    for (const result of results) {
      log(`flat: ${result.flat ? "yes" : "no "}  ${result.name}: ${result.reason}`);
    }
    log();
    log(`bench wall time (seeding + all cases, all N): ${(wallMs / 1000).toFixed(1)} s`);

    writeFileSync(
      out("./results.json"),
      `${JSON.stringify(
        {
          ns: NS,
          now: new Date(NOW).toISOString(),
          fastIndexes: FAST_INDEXES,
          indexCheckedAt: FAST_INDEXES ? (INDEX_CHECK_ALL ? NS : [NS[0]]) : [],
          rule:
            "call: documentsRead at the largest N <= resultSize + " +
            `${SMALL_CONSTANT} and within ±2 of the smallest N; cron: the whole backlog drained ` +
            "and every transaction under 25% of each Convex transaction limit",
          seeded,
          timings,
          wallMs,
          results,
        },
        null,
        2,
      )}\n`,
    );
    writeFileSync(
      out("./results.png"),
      lineChart({
        title: "Documents read per call vs rows per table (N)",
        xLabel: "N (rows seeded per table, log scale)",
        yLabel: "documents read (log scale)",
        xFormat: (x) => (x >= 1000 ? `${x / 1000}k` : String(x)),
        footnote:
          "Legend: reads at each N. Equal lines overlap; flat lines = cost independent of N.",
        series: results.map((result) => {
          const reads = NS.map((n) => result.byN[n].cost.documentsRead);
          const suffix = result.kind === "cron" ? " max/txn" : "";
          return {
            label: `${result.name}${suffix}: ${reads.join("/")}`,
            points: NS.map((n, i) => ({ x: n, y: reads[i] })),
          };
        }),
      }),
    );
    log("wrote bench/results.json and bench/results.png");

    expect(
      results.filter((r) => !r.flat).map((r) => `${r.name}: ${r.reason}`),
      "functions that are not flat",
    ).toEqual([]);
  },
  15 * 60 * 1000,
);
