import { SMALL_CONSTANT, type BenchCase } from "./cases";
import { METRIC_KEYS, type Cost, type Limits } from "./measure";

/** One case at one N. For cron cases `cost` is the per-transaction maximum of each metric. */
export type Sample = {
  cost: Cost;
  /** Wall time of the case (setup included), for finding slow cases; not judged. */
  ms?: number;
  /** Cron cases only. */
  transactions?: number;
  handled?: number;
  backlog?: number;
  /** Cron cases only: the largest used/limit ratio over all metrics and transactions. */
  worstLimitFraction?: number;
  worstMetric?: string;
  /**
   * Cron cases only: the document the most transactions of the drain wrote, and how many
   * (the most writes any single document takes during the drain, a transaction's writes to
   * one document counted once, as Convex commits them); `inOneTransaction`: the most write
   * calls any document takes within one transaction of the drain.
   */
  hottest?: { table: string; transactions: number; inOneTransaction: number };
  /** Cron cases only: the same figures per table (its busiest document). */
  hottestByTable?: Record<string, { transactions: number; inOneTransaction: number }>;
};

export type CaseResult = {
  name: string;
  kind: BenchCase["kind"];
  /** Call cases: resultSize + (the case's fixedReads, or SMALL_CONSTANT). */
  budget?: number;
  byN: Record<string, Sample>;
  flat: boolean;
  reason: string;
};

export function summariseCron(
  steps: Array<{ cost: Cost; limits: Limits; handled: number }>,
  backlog: number,
  written: Map<string, { table: string; transactions: number; inOne: number }> = new Map(),
): Sample {
  const hottest = { table: "-", transactions: 0, inOneTransaction: 0 };
  const hottestByTable: NonNullable<Sample["hottestByTable"]> = {};
  for (const entry of written.values()) {
    if (entry.transactions > hottest.transactions) {
      hottest.table = entry.table;
      hottest.transactions = entry.transactions;
    }
    hottest.inOneTransaction = Math.max(hottest.inOneTransaction, entry.inOne);
    const table = (hottestByTable[entry.table] ??= { transactions: 0, inOneTransaction: 0 });
    table.transactions = Math.max(table.transactions, entry.transactions);
    table.inOneTransaction = Math.max(table.inOneTransaction, entry.inOne);
  }
  const cost = {} as Cost;
  let worstLimitFraction = 0;
  let worstMetric = "";
  for (const key of METRIC_KEYS) {
    cost[key] = Math.max(0, ...steps.map((s) => s.cost[key]));
    for (const step of steps) {
      const fraction = step.cost[key] / step.limits[key];
      if (fraction > worstLimitFraction) {
        worstLimitFraction = fraction;
        worstMetric = key;
      }
    }
  }
  return {
    cost,
    transactions: steps.length,
    handled: steps.reduce((sum, s) => sum + s.handled, 0),
    backlog,
    worstLimitFraction,
    worstMetric,
    hottest,
    hottestByTable,
  };
}

/**
 * The acceptance rule, per case: a call reads at most its budget (resultSize + its fixed reads:
 * SMALL_CONSTANT unless the case states them) at the largest N and within ±2 of the smallest N; a cron drains its whole backlog with every transaction under 25% of each
 * Convex transaction limit, and no document takes more of its transactions as N grows
 * (`hotDocumentProblems`).
 */
export function judge(benchCase: BenchCase, byN: Record<string, Sample>, ns: number[]): CaseResult {
  const smallest = byN[String(ns[0])];
  const largest = byN[String(ns[ns.length - 1])];
  if (benchCase.kind === "call") {
    const budget = benchCase.resultSize + (benchCase.fixedReads ?? SMALL_CONSTANT);
    const small = smallest.cost.documentsRead;
    const large = largest.cost.documentsRead;
    const withinBudget = large <= budget;
    const steady = Math.abs(large - small) <= 2;
    return {
      name: benchCase.name,
      kind: benchCase.kind,
      budget,
      byN,
      flat: withinBudget && steady,
      reason:
        `${large} read at N=${ns[ns.length - 1]} (budget ${budget}${withinBudget ? "" : " EXCEEDED"}), ` +
        `${small} at N=${ns[0]} (${steady ? "within ±2" : "NOT within ±2"})`,
    };
  }
  const problems = hotDocumentProblems(benchCase, byN, ns);
  for (const n of ns) {
    const sample = byN[String(n)];
    if (sample.handled !== sample.backlog) {
      problems.push(`N=${n}: drained ${sample.handled} of ${sample.backlog}`);
    }
    if ((sample.worstLimitFraction ?? 0) >= 0.25) {
      problems.push(
        `N=${n}: ${sample.worstMetric} at ${((sample.worstLimitFraction ?? 0) * 100).toFixed(1)}% of its limit`,
      );
    }
  }
  return {
    name: benchCase.name,
    kind: benchCase.kind,
    byN,
    flat: problems.length === 0,
    reason:
      problems.length > 0
        ? problems.join("; ")
        : `drained ${largest.handled} rows in ${largest.transactions} transactions; worst ` +
          `${((largest.worstLimitFraction ?? 0) * 100).toFixed(1)}% of a limit (${largest.worstMetric}); ` +
          `transactions writing the busiest document: ${busiest(largest)} at N=${ns[ns.length - 1]}, ` +
          `${busiest(smallest)} at N=${ns[0]}`,
  };
}

/**
 * The hot-document rule of a drain: the busiest document of each table takes as many of the
 * drain's transactions at the largest N as at the smallest (±2), so concurrent runs of the same
 * work would not all conflict on it; except the seed's job owners' rows
 * (`ownerTables`: a few users own the whole backlog), and the tables the case is the
 * one serial writer of (`foldsInto`: a fold writes its totals in every transaction, by design),
 * whose documents it may write at most once per transaction.
 */
function hotDocumentProblems(
  benchCase: Extract<BenchCase, { kind: "cron" }>,
  byN: Record<string, Sample>,
  ns: number[],
): string[] {
  const smallN = ns[0];
  const largeN = ns[ns.length - 1];
  const small = byN[String(smallN)].hottestByTable ?? {};
  const large = byN[String(largeN)].hottestByTable ?? {};
  const problems: string[] = [];
  for (const [table, figure] of Object.entries(large)) {
    if ((benchCase.ownerTables as string[] | undefined)?.includes(table)) {
      continue;
    }
    if ((benchCase.foldsInto as string[] | undefined)?.includes(table)) {
      if (figure.inOneTransaction > 1) {
        problems.push(
          `a ${table} document written ${figure.inOneTransaction} times in one transaction`,
        );
      }
      continue;
    }
    const before = small[table]?.transactions ?? 0;
    if (figure.transactions > before + 2) {
      problems.push(
        `a ${table} document written by ${figure.transactions} transactions at N=${largeN}, ` +
          `${before} at N=${smallN} (grows with N)`,
      );
    }
  }
  return problems;
}

/** The busiest document of the drain at N, per table, as the verdict line shows it. */
function busiest(sample: Sample): string {
  const tables = Object.entries(sample.hottestByTable ?? {}).sort(
    ([, a], [, b]) => b.transactions - a.transactions,
  );
  return tables
    .slice(0, 3)
    .map(([table, { transactions }]) => `${table} ${transactions}`)
    .join(", ");
}

/** The results table (kept with the README's generator, bench/readme.mjs). */
export { markdownTable } from "./readme.mjs";
