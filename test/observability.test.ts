/**
 * Observability of the running platform: the four units as their own processes, tracing to an
 * OTLP receiver in this test and serving Prometheus metrics.
 * - One trace runs from a usage event produced to Kafka, through the aggregator, the relay, the
 *   message unit's consumer and its domain lookup, to the SMPP submit_sm.
 * - A real Prometheus (Debian's package) scrapes the units with the project's local scrape
 *   configuration, and every PromQL query of the Grafana dashboards answers with data.
 * - Every metric name the dashboards and alert rules use is one a unit exports.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Redis } from "ioredis";
import { BillingJobService } from "../gen/telco/batch/v1/billing_pb.js";
import { CatalogService } from "../gen/telco/domain/v1/catalog_pb.js";
import { UsageEventSchema } from "../gen/telco/usage/v1/events_pb.js";
import { UsageService } from "../gen/telco/usage/v1/usage_pb.js";
import { createKafka, createProducer, encodeRecord, publish } from "../services/kit/src/kafka.js";
import { startTelemetry, type Telemetry } from "../services/kit/src/telemetry.js";
import { tokenFor } from "./support/auth.js";
import { grpcClient } from "./support/clients.js";
import { eventually, KAFKA_BROKERS, sleep, testLogger } from "./support/env.js";
import { OtlpReceiver, type ReceivedSpan, SpanKinds } from "./support/otlp.js";
import { Platform, UNITS } from "./support/platform.js";
import { freePort, ROOT } from "./support/processes.js";
import { dashboardQueries, metricNamesIn, ruleExpressions } from "./support/promql.js";

const REDIS_URL = "redis://127.0.0.1:6379/10";
/** This month in the carrier's time zone, "YYYY-MM". */
const thisMonth = () =>
  new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Seoul", year: "numeric", month: "2-digit" })
    .format(new Date())
    .slice(0, 7);

const receiver = new OtlpReceiver();
let platform: Platform;
let telemetry: Telemetry;
let line: { subscriptionId: string; msisdn: string; personal: string[] };
/** The traceparent the test's usage event went out with (its producer span's context). */
let traceId = "";
/** The line's quota at the usage unit. */
let quota = 0n;

before(async () => {
  const redis = new Redis(REDIS_URL);
  await redis.flushdb();
  redis.disconnect();
  await receiver.start();
  platform = new Platform({ redisUrl: REDIS_URL, env: receiver.env() });
  await platform.start();
  await platform.alertTemplates();
  line = await platform.line();
  // The activation reaches the usage unit through domain.events: the quota is known there.
  const usage = grpcClient(UsageService, platform.urlOf("usage"), await tokenFor("operator"));
  let last = "";
  const known = await eventually(
    async () => {
      const u = await usage
        .getLineUsage({ subscriptionId: line.subscriptionId, month: thisMonth() })
        .catch((e: Error) => {
          last = e.message;
          return undefined;
        });
      if (u) last = `quota ${u.quotaBytes}, known ${u.quotaKnown}`;
      return u?.quotaKnown && u.quotaBytes > 0n ? u : undefined;
    },
    60_000,
    "the line's quota at the usage unit",
  ).catch((e: Error) => {
    throw new Error(`${e.message} (last answer: ${last})`);
  });

  // This process produces the event as a traced producer would.
  Object.assign(process.env, receiver.env());
  telemetry = await startTelemetry("usage-event-source");
  quota = known.quotaBytes;
  const kafka = createKafka({ brokers: KAFKA_BROKERS, clientId: "observability-test", logger: testLogger("test") });
  const producer = await createProducer(kafka);
  const record = encodeRecord(
    UsageEventSchema,
    create(UsageEventSchema, {
      eventId: `obs-${line.subscriptionId}-1`,
      subscriptionId: line.subscriptionId,
      seq: 1n,
      bytes: (quota * 55n) / 100n, // 55 %: the 50 % alert
      occurredAt: timestampNow(),
      source: "observability-test",
    }),
    { key: line.subscriptionId },
  );
  await publish(producer, [{ topic: platform.topics.usage, messages: [record] }], {
    newTrace: { fallback: () => "" },
  });
  await producer.disconnect();
  const tp = String((record.headers as Record<string, string>).traceparent ?? "");
  traceId = tp.split("-")[1] ?? "";
  assert.match(traceId, /^[0-9a-f]{32}$/, `the record went out with a traceparent (${tp})`);

  await eventually(
    async () => (platform.smsc.submitted.some((s) => s.destination === line.msisdn) ? true : undefined),
    60_000,
    "the 50 % alert's submit_sm at the SMSC",
  );
});

after(async () => {
  await telemetry?.shutdown();
  await platform?.stop();
  await receiver.stop();
});

function one(spans: ReceivedSpan[], what: string, f: (s: ReceivedSpan) => boolean): ReceivedSpan {
  const found = spans.filter(f);
  assert.equal(
    found.length,
    1,
    `${what}: ${found.length} spans; the trace has ${spans.map((s) => `${s.service}:${s.name}`).join(", ")}`,
  );
  return found[0] as ReceivedSpan;
}

describe("tracing", () => {
  it("one trace runs from the usage event produced to Kafka to the SMPP submit_sm", async () => {
    await telemetry.shutdown(); // flushes this process's producer span
    const spans = await eventually(
      async () => {
        const t = receiver.trace(traceId);
        // Parents end after their children and may reach the receiver in a later export batch:
        // wait for the outermost spans too (the dispatch, the consumers' process spans).
        const has = (f: (s: ReceivedSpan) => boolean) => t.some(f);
        return has((s) => s.name === "SMPP submit_sm") &&
          has((s) => s.service === "domain" && s.kind === SpanKinds.server) &&
          has((s) => s.name === "message dispatch") &&
          has((s) => s.service === "message" && s.kind === SpanKinds.consumer) &&
          has((s) => s.service === "usage" && s.kind === SpanKinds.consumer)
          ? t
          : undefined;
      },
      30_000,
      "the trace's spans at the receiver",
    );
    const usageTopic = platform.topics.usage;
    const notifications = platform.topics.notifications;
    const produced = one(
      spans,
      "the event's producer span",
      (s) => s.name === `${usageTopic} publish` && s.kind === SpanKinds.producer,
    );
    assert.equal(produced.service, "usage-event-source");
    assert.equal(produced.parentSpanId, "", "the trace starts where the event was produced");
    const aggregated = one(spans, "the aggregator's consumer span", (s) => s.name === `${usageTopic} process`);
    assert.equal(aggregated.service, "usage");
    assert.equal(aggregated.kind, SpanKinds.consumer);
    assert.equal(aggregated.parentSpanId, produced.spanId);
    assert.equal(aggregated.attributes["messaging.system"], "kafka");
    assert.equal(aggregated.attributes["messaging.destination.name"], usageTopic);
    const relayed = one(spans, "the relay's producer span", (s) => s.name === `${notifications} publish`);
    assert.equal(relayed.service, "usage");
    assert.equal(relayed.kind, SpanKinds.producer);
    assert.equal(relayed.parentSpanId, aggregated.spanId, "the alert continues the event's processing");
    const taken = one(spans, "the message unit's consumer span", (s) => s.name === `${notifications} process`);
    assert.equal(taken.service, "message");
    assert.equal(taken.parentSpanId, relayed.spanId);
    const dispatch = one(spans, "the dispatch", (s) => s.name === "message dispatch");
    assert.equal(dispatch.service, "message");
    assert.equal(dispatch.parentSpanId, taken.spanId);
    const lookup = one(
      spans,
      "the domain lookup (client)",
      (s) => s.service === "message" && s.name === "telco.domain.v1.SubscriptionService/GetLineContact",
    );
    assert.equal(lookup.kind, SpanKinds.client);
    assert.equal(lookup.parentSpanId, dispatch.spanId);
    assert.equal(lookup.attributes["rpc.system"], "grpc");
    assert.equal(lookup.attributes["rpc.service"], "telco.domain.v1.SubscriptionService");
    assert.equal(lookup.attributes["rpc.method"], "GetLineContact");
    assert.equal(lookup.attributes["rpc.grpc.status_code"], 0);
    const served = one(
      spans,
      "the domain lookup (server)",
      (s) => s.service === "domain" && s.name === "telco.domain.v1.SubscriptionService/GetLineContact",
    );
    assert.equal(served.kind, SpanKinds.server);
    assert.equal(served.parentSpanId, lookup.spanId);
    assert.equal(served.attributes["rpc.grpc.status_code"], 0);
    const submit = one(spans, "the SMPP submit", (s) => s.name === "SMPP submit_sm");
    assert.equal(submit.service, "message");
    assert.equal(submit.kind, SpanKinds.client);
    assert.equal(submit.parentSpanId, dispatch.spanId);
    assert.equal(submit.attributes["smpp.outcome"], "sent");

    // Datastore spans from their instrumentations, inside the same trace.
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    // Other parts of the trace call Redis too (the relay, the message unit): the counting
    // script's span is the one under the aggregator's consumer span, in whatever order they came.
    const redisSpans = spans.filter(
      (s) => s.attributes["db.system"] === "redis" || s.attributes["db.system.name"] === "redis",
    );
    assert.ok(redisSpans.length > 0, "a Redis span (the aggregator's counting script)");
    assert.ok(
      redisSpans.some((s) => byId.get(s.parentSpanId)?.spanId === aggregated.spanId),
      `a Redis span under the aggregator's consumer span (parents: ${redisSpans.map((s) => byId.get(s.parentSpanId)?.name ?? s.parentSpanId).join(", ")})`,
    );
    const pgSpan = spans.find(
      (s) =>
        s.service === "domain" &&
        (s.attributes["db.system"] === "postgresql" || s.attributes["db.system.name"] === "postgresql"),
    );
    assert.ok(pgSpan, "a PostgreSQL span of the domain lookup");

    // Every span of the trace hangs from the producer span: nothing is cut off.
    for (const s of spans) {
      let at: ReceivedSpan | undefined = s;
      for (let hops = 0; at && at.parentSpanId !== "" && hops < 50; hops++) at = byId.get(at.parentSpanId);
      assert.equal(at?.spanId, produced.spanId, `${s.service}:${s.name} is part of the one tree`);
    }
    // No personal value rides on any span any unit exported.
    const text = JSON.stringify(receiver.spans);
    for (const v of line.personal) assert.ok(!text.includes(v), "a personal value of the line's customer is on a span");
  });
});

describe("Prometheus", () => {
  let prom: ChildProcess | undefined;
  let promUrl = "";
  const dir = mkdtempSync(join(tmpdir(), "telco-prometheus-"));

  before(async () => {
    // The project's local scrape configuration, pointed at this run's ports.
    let config = readFileSync(join(ROOT, "deploy/observability/prometheus/local.yml"), "utf8");
    const defaults: Record<string, number> = { usage: 9101, message: 9102, domain: 9103, batch: 9104 };
    for (const u of UNITS) {
      const target = `127.0.0.1:${defaults[u]}`;
      assert.ok(config.includes(target), `local.yml scrapes ${u} at ${target}`);
      config = config.replaceAll(target, `127.0.0.1:${platform.ports.get(u)?.metrics}`);
    }
    writeFileSync(join(dir, "prometheus.yml"), config);
    // Its rule files, as local.yml names them (relative to the configuration).
    const rules = join(ROOT, "deploy/observability/prometheus/rules");
    cpSync(rules, join(dir, "rules"), { recursive: true, filter: (f) => !f.endsWith(".test.yml") });
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    prom = spawn(
      "/usr/bin/prometheus",
      [
        `--config.file=${join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    prom.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    await eventually(
      async () => {
        if (prom?.exitCode !== null) throw new Error(`prometheus exited: ${stderr}`);
        const r = await query("up").catch(() => undefined);
        const up = (r ?? []).filter((s) => s.value[1] === "1").map((s) => s.metric.job);
        return UNITS.every((u) => up.includes(u)) ? up : undefined;
      },
      60_000,
      "Prometheus scraping all four units",
    );
    // Traffic while Prometheus watches (a rate is the change between scrapes): RPCs of every
    // unit, refused ones, a billing list, a record that is not a usage event (dead-lettered
    // with its reason), and the line's usage to 85 %: the 80 % alert as one more SMS.
    const operator = await tokenFor("operator");
    const usage = grpcClient(UsageService, platform.urlOf("usage"), operator);
    const kafka = createKafka({ brokers: KAFKA_BROKERS, clientId: "observability-test", logger: testLogger("test") });
    const producer = await createProducer(kafka);
    await producer.send({
      topic: platform.topics.usage,
      acks: -1,
      messages: [
        { key: line.subscriptionId, value: Buffer.from([0xff, 0xff, 0xff]) },
        encodeRecord(
          UsageEventSchema,
          create(UsageEventSchema, {
            eventId: `obs-${line.subscriptionId}-2`,
            subscriptionId: line.subscriptionId,
            seq: 2n,
            bytes: (quota * 30n) / 100n,
            occurredAt: timestampNow(),
            source: "observability-test",
          }),
          { key: line.subscriptionId },
        ),
      ],
    });
    await producer.disconnect();
    for (let i = 0; i < 12; i++) {
      await grpcClient(CatalogService, platform.urlOf("domain"), operator).listPlans({});
      await usage.getLineUsage({ subscriptionId: line.subscriptionId, month: thisMonth() });
      await usage.getLineUsage({ subscriptionId: "", month: "" }).catch(() => {});
      await grpcClient(BillingJobService, platform.urlOf("batch"), await tokenFor("admin")).listJobExecutions({});
      await sleep(1_000);
    }
    await eventually(
      async () => (platform.smsc.submitted.filter((s) => s.destination === line.msisdn).length >= 2 ? true : undefined),
      30_000,
      "the 80 % alert's submit_sm",
    );
    // The last of it in two more scrapes.
    await sleep(11_000);
  });

  after(async () => {
    prom?.kill("SIGTERM");
    await new Promise((r) => (prom?.exitCode !== null ? r(undefined) : prom?.once("exit", r)));
    rmSync(dir, { recursive: true, force: true });
  });

  async function query(q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`);
    const body = (await res.json()) as {
      status: string;
      error?: string;
      data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
    };
    if (body.status !== "success") throw new Error(`${q}: ${body.error}`);
    return body.data?.result ?? [];
  }

  it("answers every query of every dashboard with data", async () => {
    const queries = dashboardQueries(join(ROOT, "deploy/observability/grafana/dashboards"));
    assert.ok(queries.length >= 12, `dashboards hold ${queries.length} queries`);
    const empty: string[] = [];
    for (const { dashboard, panel, expr } of queries) {
      const result = await query(expr);
      // Data, not just series: a ratio or quantile of nothing is NaN.
      if (!result.some((r) => !Number.isNaN(Number(r.value[1])))) empty.push(`${dashboard} / ${panel}: ${expr}`);
    }
    assert.deepEqual(empty, [], "queries without data");
  });

  it("sees the trace's flow in the units' own series", async () => {
    const val = async (q: string) => Number((await query(q))[0]?.value[1] ?? Number.NaN);
    assert.equal(await val('sum(telco_usage_events_total{result="counted"})'), 2);
    assert.equal(await val('sum(telco_usage_events_total{result="dead_lettered"})'), 1);
    assert.equal(await val(`sum(telco_kafka_records_dead_lettered_total{topic="${platform.topics.usage}"})`), 1);
    assert.equal(await val('sum(telco_usage_alerts_total{level="50"})'), 1);
    assert.equal(await val('sum(telco_usage_alerts_total{level="80"})'), 1);
    assert.equal(await val('sum(telco_usage_alerts_total{level="100"})'), 0);
    assert.equal(await val('sum(telco_message_messages_total{channel="sms",status="sent"})'), 2);
    assert.equal(await val('max(telco_message_provider_up{channel="sms"})'), 1);
    assert.ok((await val('sum(telco_rpc_server_requests_total{unit="usage",code="INVALID_ARGUMENT"})')) >= 1);
    assert.ok(
      (await val('sum(telco_rpc_client_requests_total{unit="message",method="GetLineContact",code="OK"})')) >= 1,
    );
    // The aggregator committed everything it read.
    const lag = await query(`max by (partition) (telco_kafka_consumer_lag{topic="${platform.topics.usage}"})`);
    assert.ok(lag.length > 0, "the aggregator reports its lag");
    for (const s of lag) assert.equal(s.value[1], "0", `lag of partition ${s.metric.partition}`);
  });

  it("names only metrics the units export, in dashboards and alert rules", async () => {
    const exported = new Set<string>(["up"]);
    for (const u of UNITS) {
      const text = await (await fetch(platform.metricsUrl(u))).text();
      for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
        const [, name, type] = m as unknown as [string, string, string];
        if (type === "histogram") for (const s of ["_bucket", "_sum", "_count"]) exported.add(name + s);
        else exported.add(name);
      }
      assert.match(text, new RegExp(`unit="${u}"`), `${u}'s series carry its unit label`);
    }
    const used = new Map<string, string>();
    for (const { dashboard, expr } of dashboardQueries(join(ROOT, "deploy/observability/grafana/dashboards"))) {
      for (const n of metricNamesIn(expr)) used.set(n, dashboard);
    }
    for (const { file, alert, expr } of ruleExpressions(join(ROOT, "deploy/observability/prometheus/rules"))) {
      for (const n of metricNamesIn(expr)) used.set(n, `${file} ${alert}`);
    }
    assert.ok(used.size >= 15, `${used.size} metric names used`);
    const unknown = [...used].filter(([n]) => !exported.has(n)).map(([n, where]) => `${n} (${where})`);
    assert.deepEqual(unknown, [], "metric names no unit exports");
  });
});
