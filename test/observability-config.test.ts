/**
 * The observability stack as code (deploy/observability), checked without running it: the alert
 * rules with Prometheus's own promtool (syntax and their unit tests), both Prometheus
 * configurations, the dashboards (valid JSON, provisioned data sources, unique uids), the
 * Grafana, Loki and Tempo files, and the Alloy pipeline (every component a reference names is
 * declared). That the dashboards' queries answer, and name only exported metrics, is
 * test/observability.test.ts's job, against the running units.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parse as parseYaml } from "yaml";
import { ROOT } from "./support/processes.js";
import { metricNamesIn } from "./support/promql.js";

const OBS = join(ROOT, "deploy/observability");
const read = (p: string) => readFileSync(join(OBS, p), "utf8");
// biome-ignore lint/suspicious/noExplicitAny: configuration files are untyped YAML
const yaml = (p: string) => parseYaml(read(p)) as any;

function promtool(...args: string[]): { code: number | null; out: string } {
  const r = spawnSync("/usr/bin/promtool", args, { cwd: OBS, encoding: "utf8" });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

describe("Prometheus rules and configuration", () => {
  it("promtool check rules: the alert rules are valid", () => {
    const r = promtool("check", "rules", "prometheus/rules/telco.yml");
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUCCESS: \d+ rules found/);
  });

  it("promtool test rules: each alert fires on the series it is for, and not on others", () => {
    const r = promtool("test", "rules", "prometheus/rules/telco.test.yml");
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUCCESS/);
  });

  it("promtool check config: the VM's and the local scrape configuration", () => {
    for (const f of ["prometheus/prometheus.yml", "prometheus/local.yml"]) {
      const r = promtool("check", "config", f);
      assert.equal(r.code, 0, `${f}: ${r.out}`);
    }
  });

  it("alerts for what an operator must hear of: lag growing, dead letters, SMSC failures, billing failed, error rates", () => {
    const rules = yaml("prometheus/rules/telco.yml").groups.flatMap((g: { rules: unknown[] }) => g.rules) as {
      alert?: string;
      expr: string;
      for?: string;
      labels?: Record<string, string>;
      annotations?: Record<string, string>;
    }[];
    const uses = (metric: string) => rules.filter((r) => r.alert && metricNamesIn(r.expr).has(metric));
    for (const metric of [
      "telco_kafka_consumer_lag",
      "telco_kafka_records_dead_lettered_total",
      "telco_message_messages_total",
      "telco_message_provider_up",
      "telco_billing_executions_total",
      "telco_rpc_server_requests_total",
    ]) {
      assert.ok(uses(metric).length > 0, `an alert on ${metric}`);
    }
    for (const r of rules.filter((x) => x.alert)) {
      assert.ok(r.for, `${r.alert}: a for: duration`);
      assert.match(r.labels?.severity ?? "", /^(page|ticket)$/, `${r.alert}: severity page or ticket`);
      assert.ok(r.annotations?.summary && r.annotations.description, `${r.alert}: summary and description`);
    }
  });
});

describe("Grafana", () => {
  const dashboards = readdirSync(join(OBS, "grafana/dashboards")).filter((f) => f.endsWith(".json"));
  const sources = yaml("grafana/provisioning/datasources/datasources.yml").datasources as {
    uid: string;
    type: string;
    jsonData?: Record<string, unknown>;
  }[];

  it("provisions Prometheus, Loki and Tempo, with logs and traces linked by trace id", () => {
    assert.deepEqual(sources.map((s) => s.uid).sort(), ["loki", "prometheus", "tempo"]);
    const loki = sources.find((s) => s.uid === "loki");
    const derived = (loki?.jsonData?.derivedFields ?? []) as { datasourceUid?: string; name?: string }[];
    assert.ok(
      derived.some((d) => d.datasourceUid === "tempo"),
      "Loki log lines link to their trace in Tempo",
    );
    const tempo = sources.find((s) => s.uid === "tempo");
    assert.equal((tempo?.jsonData?.tracesToLogsV2 as { datasourceUid?: string })?.datasourceUid, "loki");
    const provider = yaml("grafana/provisioning/dashboards/dashboards.yml");
    assert.ok(provider.providers?.length > 0, "a dashboard provider");
  });

  it("has the four dashboards as valid JSON, each panel querying a provisioned data source", () => {
    for (const name of ["usage-pipeline.json", "message-delivery.json", "billing-runs.json", "rpc-red.json"]) {
      assert.ok(dashboards.includes(name), name);
    }
    const uids = new Set<string>();
    for (const f of dashboards) {
      const d = JSON.parse(read(`grafana/dashboards/${f}`)) as {
        uid: string;
        title: string;
        panels: { title: string; type: string; targets?: { expr?: string }[]; datasource?: { uid: string } }[];
      };
      assert.ok(d.uid && !uids.has(d.uid), `${f}: a uid of its own`);
      uids.add(d.uid);
      assert.ok(d.title, `${f}: a title`);
      const queried = d.panels.filter((p) => p.type !== "row" && p.type !== "text");
      assert.ok(queried.length >= 3, `${f}: ${queried.length} panels`);
      for (const p of queried) {
        assert.ok(
          (p.targets ?? []).some((t) => t.expr),
          `${f} / ${p.title}: a query`,
        );
        const uid = p.datasource?.uid;
        assert.ok(uid && sources.some((s) => s.uid === uid), `${f} / ${p.title}: data source ${uid} is provisioned`);
      }
    }
  });
});

describe("Loki, Tempo and the VM", () => {
  it("Loki keeps 30 days with structured metadata (trace ids are not labels); Tempo takes OTLP", () => {
    const loki = yaml("loki/loki.yml");
    assert.equal(loki.limits_config?.allow_structured_metadata, true);
    assert.ok(["30d", "720h"].includes(loki.limits_config?.retention_period), "Loki keeps 30 days");
    assert.ok(loki.schema_config?.configs?.some((c: { schema: string }) => c.schema === "v13"));
    const tempo = yaml("tempo/tempo.yml");
    const otlp = tempo.distributor?.receivers?.otlp?.protocols;
    assert.ok(otlp?.grpc && otlp?.http, "Tempo receives OTLP over gRPC and HTTP");
  });

  it("the compose file mounts only files that exist", () => {
    const compose = yaml("docker-compose.yml") as { services: Record<string, { volumes?: string[] }> };
    for (const s of ["prometheus", "loki", "tempo", "grafana"]) assert.ok(compose.services[s], `service ${s}`);
    for (const [name, svc] of Object.entries(compose.services)) {
      for (const v of svc.volumes ?? []) {
        const src = v.split(":")[0] as string;
        if (src.startsWith("./")) assert.ok(existsSync(join(OBS, src)), `${name}: ${src} exists`);
      }
    }
  });
});

describe("Alloy", () => {
  const config = read("alloy/config.alloy");
  const declared = new Set(
    [...config.matchAll(/^([a-z0-9_]+(?:\.[a-z0-9_]+)+)\s+"([^"]+)"\s*\{/gm)].map((m) => `${m[1]}.${m[2]}`),
  );

  it("collects pod logs, scrapes metrics ports, receives OTLP, adds pod and namespace", () => {
    for (const c of [
      "discovery.kubernetes",
      "loki.source.kubernetes",
      "loki.process",
      "loki.write",
      "prometheus.scrape",
      "prometheus.remote_write",
      "otelcol.receiver.otlp",
      "otelcol.processor.k8sattributes",
      "otelcol.exporter.otlp",
    ]) {
      assert.ok(
        [...declared].some((d) => d.startsWith(`${c}.`)),
        `a ${c} component`,
      );
    }
    assert.match(config, /target_label\s*=\s*"namespace"/);
    assert.match(config, /target_label\s*=\s*"pod"/);
  });

  it("every component a pipeline forwards to is declared", () => {
    const refs = [
      ...config.matchAll(
        /\b((?:discovery|loki|prometheus|otelcol)\.[a-z0-9_.]+?\.[a-z0-9_]+)\.(receiver|input|targets|output)\b/g,
      ),
    ].map((m) => m[1] as string);
    assert.ok(refs.length >= 8, `${refs.length} references`);
    for (const r of refs) assert.ok(declared.has(r), `${r} is referenced but not declared`);
  });
});
