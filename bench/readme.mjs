/**
 * The results tables of bench/README.md, generated from bench/results.json and
 * bench/liveResults.json. `npm run bench` calls `updateReadme` after each test writes its JSON;
 * `npm run bench:report` (`node bench/readme.mjs`) regenerates both tables from the JSON files
 * as they are, offline and without running anything. Each table sits between marker comments
 * (`<!-- results:start -->` … `<!-- results:end -->`, `<!-- live-results:start -->` …
 * `<!-- live-results:end -->`); nothing outside them is touched.
 *
 * Plain JavaScript so Node runs it without a TypeScript loader; types in readme.d.mts.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const here = (file) => fileURLToPath(new URL(file, import.meta.url));
export const README_PATH = here("./README.md");
export const RESULTS_PATH = here("./results.json");
export const LIVE_RESULTS_PATH = here("./liveResults.json");

const number = (n) => n.toLocaleString("en-US");
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;
const kb = (bytes) => (bytes >= 10_000 ? `${(bytes / 1024).toFixed(0)}K` : String(bytes));

/** A Markdown table: function × N -> documents read / bytes read / documents written, flat. */
export function markdownTable(results, ns) {
  const header = [
    "function",
    ...ns.map((n) => `N=${number(n)} read / bytes / written`),
    "budget",
    "flat",
  ];
  const lines = [
    `| ${header.join(" | ")} |`,
    `| ${header.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`,
  ];
  for (const result of results) {
    const cells = ns.map((n) => {
      const { cost } = result.byN[String(n)];
      return `${cost.documentsRead} / ${kb(cost.bytesRead)} / ${cost.documentsWritten}`;
    });
    const budget = result.kind === "call" ? String(result.budget) : "< 25% of limits";
    lines.push(`| ${[result.name, ...cells, budget, result.flat ? "yes" : "no"].join(" | ")} |`);
  }
  return lines.join("\n");
}

/** The live-query rule for one (write, query) pair: both numbers within ±2 from the smallest Q to the largest. */
export function liveFlat(small, large) {
  return (
    Math.abs(small.invalidated - large.invalidated) <= 2 &&
    Math.abs(small.rerunReads - large.rerunReads) <= 2
  );
}

/**
 * A Markdown table: write × live query -> subscriptions invalidated / documents their re-runs
 * read, per Q, and a total per write. Pairs a write touches at no Q are left out.
 */
export function liveTable(live) {
  const { qs, results } = live;
  const small = results[String(qs[0])];
  const large = results[String(qs[qs.length - 1])];
  const header = [
    "write",
    "live query",
    ...qs.map((q) => `Q=${number(q)} invalidated / re-run reads`),
    "flat",
  ];
  const lines = [
    `| ${header.join(" | ")} |`,
    `| ${header.map((_, i) => (i < 2 ? "---" : "---:")).join(" | ")} |`,
  ];
  small.forEach((write, w) => {
    for (const query of Object.keys(write.byQuery)) {
      const touched = qs.some((q) => results[String(q)][w].byQuery[query].invalidated > 0);
      if (!touched) continue;
      const cells = qs.map((q) => {
        const c = results[String(q)][w].byQuery[query];
        return `${c.invalidated} / ${c.rerunReads}`;
      });
      const flat = liveFlat(write.byQuery[query], large[w].byQuery[query]);
      lines.push(`| ${[write.write, query, ...cells, flat ? "yes" : "no"].join(" | ")} |`);
    }
    const totals = qs.map((q) => {
      const { total } = results[String(q)][w];
      return `${total.invalidated} / ${total.rerunReads}`;
    });
    lines.push(`| ${[write.write, "**all**", ...totals, ""].join(" | ")} |`);
  });
  return lines.join("\n");
}

/** The generated part of bench/README.md's "Results" section. */
export function resultsSection(run) {
  const { ns, results, timings, wallMs } = run;
  const largest = String(ns[ns.length - 1]);
  const notFlat = results.filter((r) => !r.flat).length;
  const crons = results.filter((r) => r.kind === "cron");
  const lines = [
    `Generated from \`bench/results.json\` by the last \`npm run bench\` (N = ${ns.map(number).join(", ")}; ` +
      `fast indexes ${run.fastIndexes ? `on, compared with convex-test's own scan at N = ${run.indexCheckedAt.map(number).join(", ")}` : "off"}). ` +
      `${notFlat === 0 ? "Every function is flat." : `**${notFlat} not flat.**`}`,
    "",
    markdownTable(results, ns),
    "",
    "Largest transaction of each cron drain at the largest N, and per N the most writes any single",
    "document takes during the drain: how many of its transactions write the busiest document of",
    "each table (the three busiest tables; judged by the rule: flat across N, or for the table a",
    "fold is the one writer of, at most one write per transaction),",
    "and the most write calls one document takes within one transaction:",
    "",
    `| cron | rows drained | transactions | worst share of a limit | ${ns.map((n) => `most writes to one document, N=${number(n)}`).join(" | ")} |`,
    `| --- | ---: | ---: | --- | ${ns.map(() => "---:").join(" | ")} |`,
    ...crons.map((r) => {
      const s = r.byN[largest];
      const hottest = ns.map((n) => {
        const sample = r.byN[String(n)];
        const h = sample.hottest;
        if (h === undefined) return "-";
        const byTable = Object.entries(sample.hottestByTable ?? { [h.table]: h })
          .sort(([, a], [, b]) => b.transactions - a.transactions)
          .slice(0, 3)
          .map(([table, t]) => `${number(t.transactions)} ${table}`);
        return `${byTable.join(", ")}; ${h.inOneTransaction} in one`;
      });
      return `| ${r.name.replace(/^cron /, "")} | ${number(s.handled)} of ${number(s.backlog)} | ${number(s.transactions)} | ${((s.worstLimitFraction ?? 0) * 100).toFixed(1)}% (${s.worstMetric}) | ${hottest.join(" | ")} |`;
    }),
    "",
    "The verdict per function, as the bench prints it:",
    "",
    "```",
    ...results.map((r) => `flat: ${r.flat ? "yes" : "no "}  ${r.name}: ${r.reason}`),
    "```",
    "",
    `Time inside the test: ${seconds(wallMs)} (` +
      ns
        .map(
          (n) =>
            `N = ${number(n)}: seeding ${seconds(timings[String(n)].seedMs)}, cases ${seconds(timings[String(n)].casesMs)}`,
        )
        .join("; ") +
      ").",
  ];
  return lines.join("\n");
}

/** The generated part of bench/README.md's "Live-query cost" section. */
export function liveSection(live) {
  const { qs, timings, wallMs } = live;
  return [
    `Generated from \`bench/liveResults.json\` by the last \`npm run bench\` (Q = ${qs.map(number).join(", ")}).`,
    "",
    liveTable(live),
    "",
    `Time inside the test: ${seconds(wallMs)} (` +
      qs
        .map(
          (q) =>
            `Q = ${number(q)}: seeding and subscribing ${seconds(timings[String(q)].seedAndSubscribeMs)}, writes ${seconds(timings[String(q)].writesMs)}`,
        )
        .join("; ") +
      ").",
  ].join("\n");
}

/** `text` with what lies between `<!-- name:start -->` and `<!-- name:end -->` replaced by `content`. */
export function replaceSection(text, name, content) {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  if (from === -1 || to === -1 || to < from) {
    throw new Error(`bench/README.md: markers ${start} … ${end} not found`);
  }
  return `${text.slice(0, from + start.length)}\n${content}\n${text.slice(to)}`;
}

/** Rewrites the tables of bench/README.md from the given results (either may be left out). */
export function updateReadme({ results, live }, readmePath = README_PATH) {
  let text = readFileSync(readmePath, "utf8");
  if (results) text = replaceSection(text, "results", resultsSection(results));
  if (live) text = replaceSection(text, "live-results", liveSection(live));
  writeFileSync(readmePath, text);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  updateReadme({
    results: JSON.parse(readFileSync(RESULTS_PATH, "utf8")),
    live: JSON.parse(readFileSync(LIVE_RESULTS_PATH, "utf8")),
  });
  process.stdout.write(
    "bench/README.md: tables regenerated from results.json and liveResults.json\n",
  );
}
