import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";

export interface DashboardQuery {
  dashboard: string;
  panel: string;
  expr: string;
}

interface Target {
  expr?: string;
  datasource?: { uid?: string; type?: string } | string;
}
interface Panel {
  title?: string;
  datasource?: { uid?: string; type?: string } | string;
  targets?: Target[];
  panels?: Panel[];
}

const isPrometheus = (ds: Target["datasource"]) => {
  if (ds === undefined) return undefined;
  if (typeof ds === "string") return /prom/i.test(ds);
  return ds.type === "prometheus" || ds.uid === "prometheus";
};

/** A dashboard query as Grafana would send it at a 1-minute step: template variables filled in. */
export function fillVariables(expr: string): string {
  return expr
    .replaceAll("$__rate_interval", "1m")
    .replaceAll("$__interval", "1m")
    .replaceAll("$__range", "5m")
    .replace(/\$\{(\w+)(:\w+)?\}/g, ".*")
    .replace(/\$(\w+)/g, ".*");
}

/** Every Prometheus query of every dashboard JSON in `dir` (panels in rows included). */
export function dashboardQueries(dir: string): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  for (const f of readdirSync(dir).filter((x) => x.endsWith(".json"))) {
    const d = JSON.parse(readFileSync(join(dir, f), "utf8")) as { title?: string; panels?: Panel[] };
    const walk = (panels: Panel[] | undefined) => {
      for (const p of panels ?? []) {
        for (const t of p.targets ?? []) {
          const prom = isPrometheus(t.datasource) ?? isPrometheus(p.datasource) ?? true;
          if (prom && t.expr) out.push({ dashboard: f, panel: p.title ?? "(untitled)", expr: fillVariables(t.expr) });
        }
        walk(p.panels);
      }
    };
    walk(d.panels);
  }
  return out;
}

/** The expressions of every alerting and recording rule in the YAML files of `dir`. */
export function ruleExpressions(dir: string): { file: string; alert: string; expr: string }[] {
  const out: { file: string; alert: string; expr: string }[] = [];
  for (const f of readdirSync(dir).filter((x) => x.endsWith(".yml") && !x.endsWith(".test.yml"))) {
    const doc = parseYaml(readFileSync(join(dir, f), "utf8")) as {
      groups: { rules: { alert?: string; record?: string; expr: string }[] }[];
    };
    for (const g of doc.groups) {
      for (const r of g.rules) out.push({ file: f, alert: r.alert ?? r.record ?? "", expr: String(r.expr) });
    }
  }
  return out;
}

const KEYWORDS = new Set([
  // Aggregation operators (also written as "sum by (x) (...)", with no "(" right after the name).
  "sum",
  "min",
  "max",
  "avg",
  "count",
  "stddev",
  "stdvar",
  "topk",
  "bottomk",
  "quantile",
  "count_values",
  "group",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "and",
  "or",
  "unless",
  "offset",
  "inf",
  "nan",
  "atan2",
]);

/**
 * The metric names a PromQL expression reads: identifiers that are not functions (followed by
 * "("), keywords, label names in braces or in by/without/on/ignoring lists, strings or numbers.
 */
export function metricNamesIn(expr: string): Set<string> {
  const s = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/'(?:[^'\\]|\\.)*'/g, "''")
    .replace(/\{[^}]*\}/g, "")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "$1");
  const names = new Set<string>();
  for (const m of s.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const word = m[0];
    const rest = s.slice((m.index ?? 0) + word.length);
    if (/^\s*\(/.test(rest)) continue; // a function
    if (KEYWORDS.has(word.toLowerCase())) continue;
    const before = s.slice(0, m.index ?? 0);
    if (/[0-9.]$/.test(before)) continue; // a unit of a number, e.g. 1e3
    names.add(word);
  }
  return names;
}
