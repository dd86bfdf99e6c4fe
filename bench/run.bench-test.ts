import { mkdirSync, writeFileSync } from "node:fs";
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
import { convexTest } from "convex-test";
import schema from "../convex/schema";
import { registerComponents } from "../tests/support/setup";
import { QUEUE_POSITION_CAP } from "../convex/model/jobViews";
import { setFastIndexes, setIndexCheck } from "./fastIndexes";
import {
  LIVE_QUERIES,
  LIVE_WRITES,
  liveWorld,
  measureLiveWrites,
  type LiveResult,
} from "./liveWorld";
import { answering } from "./measure";
import { lineChart } from "./png";
import { liveFlat, liveTable, updateReadme, type BenchRun, type LiveRun } from "./readme.mjs";
import { countWrites } from "./readSets";
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
 *
 * A second test measures live-query cost (what one write re-runs; see its comment below). Run
 * one of the two with `-t "as tables grow"` or `-t "live queries"`.
 *
 * `BENCH_CASES=<part>[,<part>...]` runs only the cases whose name contains one of the parts
 * (ignoring case), and only the deployments they need. Such a partial run writes its JSON to
 * bench/out/results.json and leaves bench/results.json, bench/results.png and the README alone:
 * those always hold a run of every case.
 */
const NS = (process.env.BENCH_NS ?? "1000,10000,100000").split(",").map(Number);
const CASE_FILTER = (process.env.BENCH_CASES ?? "")
  .split(",")
  .map((part) => part.trim())
  .filter((part) => part !== "");
const SELECTED =
  CASE_FILTER.length === 0
    ? CASES
    : CASES.filter((benchCase) =>
        CASE_FILTER.some((part) => benchCase.name.toLowerCase().includes(part.toLowerCase())),
      );
const PARTIAL = SELECTED.length < CASES.length;
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
  // Per document: how many of the drain's transactions wrote it (a hot document is one that
  // many transactions write: run concurrently, as scheduled work does, they would conflict).
  const written = new Map<string, { table: string; transactions: number; inOne: number }>();
  let step: CronStep;
  do {
    const counted = await countWrites(() => benchCase.step(env));
    step = counted.result;
    steps.push(step);
    for (const [id, { table, writes }] of counted.writes) {
      const entry = written.get(id) ?? { table, transactions: 0, inOne: 0 };
      entry.transactions += 1;
      entry.inOne = Math.max(entry.inOne, writes);
      written.set(id, entry);
    }
  } while (step.more && steps.length < maxSteps);
  return summariseCron(steps, backlog, written);
}

test(
  "every function's cost stays flat as tables grow",
  async () => {
    if (SELECTED.length === 0) {
      throw new Error(`BENCH_CASES=${process.env.BENCH_CASES} names no case of bench/cases.ts`);
    }
    const started = performance.now();
    const byCase = new Map<string, Record<string, Sample>>();
    const seeded: Record<string, Record<string, Record<string, number>>> = {};
    const timings: Record<string, { seedMs: number; casesMs: number }> = {};
    // Deployments in the order their first case appears; each case runs in table order.
    const deployments: Deployment[] = [];
    for (const benchCase of SELECTED) {
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
        for (const [name, value] of Object.entries(deployment.env ?? {})) {
          vi.stubEnv(name, value);
        }
        const seedStart = performance.now();
        const env = await deployment.seed(n, NOW);
        const seedTook = performance.now() - seedStart;
        seedMs += seedTook;
        seeded[n][deployment.name] = env.rows;
        const casesStart = performance.now();
        try {
          for (const benchCase of SELECTED.filter((c) => (c.deployment ?? MAIN) === deployment)) {
            const caseStart = performance.now();
            const sample = await runCase(benchCase, env);
            sample.ms = Math.round(performance.now() - caseStart);
            byCase.set(benchCase.name, { ...byCase.get(benchCase.name), [n]: sample });
          }
        } finally {
          vi.unstubAllEnvs();
          // The deployment is dropped with the scheduled functions it left pending (a drained
          // cron's continuations, a workpool's loop): none may fire into the next one's run.
          // Clearing the fake timers resets the fake clock: back to NOW, as every seed expects.
          vi.clearAllTimers();
          vi.setSystemTime(NOW);
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

    const results: CaseResult[] = SELECTED.map((benchCase) =>
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

    const run: BenchRun & Record<string, unknown> = {
      ns: NS,
      ...(PARTIAL ? { cases: CASE_FILTER } : {}),
      now: new Date(NOW).toISOString(),
      fastIndexes: FAST_INDEXES,
      indexCheckedAt: FAST_INDEXES ? (INDEX_CHECK_ALL ? NS : [NS[0]]) : [],
      rule:
        "call: documentsRead at the largest N <= resultSize + fixed reads (the case's own, " +
        `itemised in bench/cases.ts, or ${SMALL_CONSTANT}) and within ±2 of the smallest N; ` +
        "cron: the whole backlog drained " +
        "and every transaction under 25% of each Convex transaction limit",
      seeded,
      timings,
      wallMs,
      results,
    };
    if (PARTIAL) {
      mkdirSync(out("./out"), { recursive: true });
      writeFileSync(out("./out/results.json"), `${JSON.stringify(run, null, 2)}\n`);
      log(`partial run (BENCH_CASES): wrote bench/out/results.json only`);
    } else {
      writeResults(run, results);
    }

    expect(
      results.filter((r) => !r.flat).map((r) => `${r.name}: ${r.reason}`),
      "functions that are not flat",
    ).toEqual([]);
  },
  // Generous: the 100,000-row drains take minutes each, the subscription ones most of an hour
  // together (10,000 transactions each).
  3 * 60 * 60 * 1000,
);

/** A run of every case: bench/results.json, bench/results.png and the README's results table. */
function writeResults(run: BenchRun, results: CaseResult[]) {
  writeFileSync(out("./results.json"), `${JSON.stringify(run, null, 2)}\n`);
  writeFileSync(
    out("./results.png"),
    lineChart({
      title: "Documents read per call vs rows per table (N)",
      xLabel: "N (rows seeded per table, log scale)",
      yLabel: "documents read (log scale)",
      xFormat: (x) => (x >= 1000 ? `${x / 1000}k` : String(x)),
      footnote: "Legend: reads at each N. Equal lines overlap; flat lines = cost independent of N.",
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
  updateReadme({ results: run });
  log("wrote bench/results.json, bench/results.png and the results table of bench/README.md");
}

/**
 * Live-query cost (bench/liveWorld.ts): Q = 1,000 and 10,000 users, each with a queued job and
 * its five live queries open, plus the admins' dashboards; for each common write, how many
 * subscriptions it invalidates and what their re-runs read. Passes when both are within ±2 of
 * the smallest Q at the largest (flat in Q) and a claim re-runs at most cap + 1 `getJob`s.
 * Writes bench/liveResults.json. `LIVE_QS=300,3000` runs other sizes.
 */
const LIVE_QS = (process.env.LIVE_QS ?? "1000,10000").split(",").map(Number);
const liveModules = import.meta.glob("../convex/**/*.ts");

test(
  "live queries: one write re-runs a number of subscriptions that does not grow with Q",
  async () => {
    const started = performance.now();
    const byQ: Record<string, LiveResult[]> = {};
    const timings: Record<string, { seedAndSubscribeMs: number; writesMs: number }> = {};
    for (const q of LIVE_QS) {
      if (FAST_INDEXES) {
        setIndexCheck(INDEX_CHECK_ALL || q === LIVE_QS[0]);
      } else {
        setFastIndexes(false);
      }
      const t0 = performance.now();
      const t = answering(
        registerComponents(convexTest({ schema, modules: liveModules, transactionLimits: true })),
      );
      const world = await liveWorld(t, q, NOW);
      const t1 = performance.now();
      byQ[q] = await measureLiveWrites(world);
      timings[q] = {
        seedAndSubscribeMs: Math.round(t1 - t0),
        writesMs: Math.round(performance.now() - t1),
      };
      log(
        `Q=${q}: ${world.subscriptions.length} subscriptions in ` +
          `${((t1 - t0) / 1000).toFixed(1)} s, writes in ${((performance.now() - t1) / 1000).toFixed(1)} s`,
      );
    }
    const small = byQ[LIVE_QS[0]];
    const large = byQ[LIVE_QS[LIVE_QS.length - 1]];
    const problems: string[] = [];
    LIVE_WRITES.forEach((write, w) => {
      for (const query of LIVE_QUERIES) {
        const a = small[w].byQuery[query];
        const b = large[w].byQuery[query];
        if (!liveFlat(a, b)) {
          problems.push(
            `${write.name} / ${query}: ${a.invalidated}/${a.rerunReads} -> ${b.invalidated}/${b.rerunReads}`,
          );
        }
      }
    });
    const claim = LIVE_WRITES.findIndex((write) => write.name === "worker.claimJob");
    for (const q of LIVE_QS) {
      const invalidated = byQ[q][claim].byQuery["jobs.getJob"].invalidated;
      if (invalidated > QUEUE_POSITION_CAP + 1) {
        problems.push(`Q=${q}: a claim re-ran ${invalidated} getJob subscriptions (> cap + 1)`);
      }
    }
    const wallMs = Math.round(performance.now() - started);
    const live: LiveRun & Record<string, unknown> = {
      qs: LIVE_QS,
      now: new Date(NOW).toISOString(),
      rule:
        "per write and live query: subscriptions invalidated and documents their re-runs read " +
        "within ±2 of the smallest Q at the largest; a claim re-runs at most cap + 1 getJobs",
      timings,
      wallMs,
      results: byQ,
    };
    log();
    log(liveTable(live));
    log();
    log(`live-query bench wall time: ${(wallMs / 1000).toFixed(1)} s`);
    writeFileSync(out("./liveResults.json"), `${JSON.stringify(live, null, 2)}\n`);
    updateReadme({ live });
    log("wrote bench/liveResults.json and the live-query table of bench/README.md");
    expect(problems, "live queries whose cost grows with Q").toEqual([]);
  },
  15 * 60 * 1000,
);
