/**
 * `npm run reliability`: the whole platform as one system, under faults. The four units run as
 * their own processes (as `npm start` runs them) on PostgreSQL, Kafka, a Redis of the run's own
 * with an append-only file fsynced on every write, and a real SMPP server. Then:
 *
 *   1. the scenario: lines seeded through the domain unit; usage driven through Kafka until every
 *      line crosses 50, 80 and 100 %, each alert one SMS at the SMSC; billing of last month
 *      (for lines active all of it), each bill one SMS;
 *   2. one round of the same load per fault, the fault injected in the middle of it: each unit
 *      SIGKILLed and restarted, several at once, the Kafka broker, Redis, PostgreSQL, the SMSC
 *      unreachable, a second aggregator joining and leaving the consumer group; the batch unit
 *      SIGKILLed during a billing run;
 *   3. hostile input: every RPC of every unit over gRPC and Connect, every topic;
 *   4. the RPCs operators use most under load from a second process while a round runs.
 *
 * Each round ends with a reconciliation (expected vs observed events, alerts, invoices,
 * messages) and the time to recover. The last line is JSON; any loss or duplicate makes the exit
 * code 1.
 *
 *   npm run reliability [-- --lines-per-round N] [--billing-lines N] [--smsc-outage-s S] [--load-s S] [--only f1,f2] [--smoke]
 *   npm run scenario    (= --scenario: the whole flow once, no faults, no hostile input)
 *   npm run reliability -- --scale 1000000 [--scale-rate 25000] [--scale-reports 3] [--hot-lines 1000] [--scale-faults f1,f2]
 *       (the larger run: N lines seeded, every one reporting, the faults during that load,
 *        every line's total and the month's billing of them all reconciled)
 */
import { execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Producer } from "kafkajs";
import { BatchStatus, BillingJobService } from "../gen/telco/batch/v1/billing_pb.js";
import { SubscriptionService } from "../gen/telco/domain/v1/subscription_pb.js";
import { Channel, DeliveryStatus } from "../gen/telco/message/v1/events_pb.js";
import { MessageService } from "../gen/telco/message/v1/message_pb.js";
import { TemplateService, VariableType } from "../gen/telco/message/v1/template_pb.js";
import { UsageEventSchema } from "../gen/telco/usage/v1/events_pb.js";
import { UsageService } from "../gen/telco/usage/v1/usage_pb.js";
import { createKafka, createProducer, encodeRecord, publish } from "../services/kit/src/kafka.js";
import { createLogger } from "../services/kit/src/logger.js";
import { createKnex } from "../services/kit/src/postgres.js";
import { ZonedTime } from "../services/kit/src/zoned-time.js";
import { tokenFor } from "../test/support/auth.js";
import { grpcClient } from "../test/support/clients.js";
import { KAFKA_BROKERS } from "../test/support/env.js";
import { Platform, type Unit } from "../test/support/platform.js";
import { freePort, spawnScript, spawnUnit, type UnitProcess, waitForLog } from "../test/support/processes.js";
import { testPii } from "../test/support/units.js";
// @ts-expect-error: a plain .mjs module shared with `npm run infra:up`
import { infraUp } from "./infra/lib.mjs";
import { cli } from "./lib/cli.js";
import { LocalRedis } from "./lib/local-redis.js";
import { type HostileReport, hostileInput } from "./lib/reliability/hostile.js";
import {
  ALERT_LEVELS,
  alertBalance,
  blank,
  type LineUnderTest,
  median,
  type Reconciliation,
  tally,
} from "./lib/reliability/ledger.js";
import {
  checkInvoices,
  countBills,
  type InvoiceCheck,
  lineNumber,
  liveLines,
  monthTotals,
  UsageModel,
} from "./lib/reliability/scale.js";
import { lineId, UsageGenerator } from "./lib/usage-generator.js";
import { personFor, seed } from "./seed.js";

const USAGE =
  "usage: npm run reliability [-- --lines-per-round N] [--billing-lines N] [--smsc-outage-s S] [--load-s S] [--only fault,...] [--smoke | --scenario | --scale LINES [--scale-rate EVENTS_PER_S] [--scale-reports N] [--hot-lines N] [--scale-faults f1,f2]]";
const FAULTS = [
  "none",
  "kill-usage",
  "kill-message",
  "kill-domain",
  "kill-several",
  "kafka",
  "redis",
  "postgres",
  "smsc",
  "rebalance",
] as const;
type Fault = (typeof FAULTS)[number];
const { values, num, fail } = cli("reliability", USAGE, {
  "lines-per-round": { type: "string", default: "6" },
  "billing-lines": { type: "string", default: "20" },
  "smsc-outage-s": { type: "string", default: "60" },
  "load-s": { type: "string", default: "10" },
  only: { type: "string" },
  smoke: { type: "boolean", default: false },
  scenario: { type: "boolean", default: false },
  scale: { type: "string" },
  "scale-rate": { type: "string", default: "25000" },
  "scale-reports": { type: "string", default: "3" },
  "hot-lines": { type: "string", default: "1000" },
  "scale-faults": { type: "string" },
});
const SMOKE = values.smoke === true;
const SCENARIO = values.scenario === true;
if (SMOKE && SCENARIO) fail("--smoke and --scenario are two different runs: give one");
if (SCENARIO && values.only !== undefined) fail("--scenario runs no faults: --only does not apply");
const SCALE = values.scale === undefined ? 0 : num("scale", 1_000, 10_000_000);
if (SCALE > 0 && (SMOKE || SCENARIO || values.only !== undefined))
  fail("--scale is a run of its own: give it without --smoke, --scenario or --only");
const SCALE_RATE = num("scale-rate", 100, 1_000_000);
const SCALE_REPORTS = num("scale-reports", 1, 100);
const HOT_LINES = SCALE > 0 ? Math.min(num("hot-lines", 1, 100_000), Math.floor(SCALE / 10)) : 0;
/** The faults of the larger run, one after the other during its load. */
const SCALE_FAULTS: Fault[] =
  values["scale-faults"] === undefined
    ? ["kill-usage", "redis", "kafka", "rebalance", "postgres", "kill-several"]
    : String(values["scale-faults"])
        .split(",")
        .map((f) => {
          if (!(FAULTS as readonly string[]).includes(f) || f === "none" || f === "smsc")
            fail(
              `--scale-faults: unknown fault ${f} (some of ${FAULTS.filter((x) => x !== "none" && x !== "smsc").join(", ")})`,
            );
          return f as Fault;
        });
if (values["scale-faults"] !== undefined && SCALE === 0) fail("--scale-faults goes with --scale");
const LINES = SMOKE ? Math.min(num("lines-per-round", 1, 10_000), 3) : num("lines-per-round", 1, 10_000);
const BILLING_LINES = SMOKE ? Math.min(num("billing-lines", 1, 100_000), 10) : num("billing-lines", 1, 100_000);
const LOAD_S = SMOKE ? Math.min(num("load-s", 1, 3600), 5) : num("load-s", 1, 3600);
const OUTAGE_MS = (SMOKE ? Math.min(num("smsc-outage-s", 1, 3600), 15) : num("smsc-outage-s", 1, 3600)) * 1000;
const only = values.only === undefined ? undefined : String(values.only).split(",");
for (const f of only ?? [])
  if (!(FAULTS as readonly string[]).includes(f)) fail(`--only: unknown fault ${f} (one of ${FAULTS.join(", ")})`);
const rounds: Fault[] = SCENARIO ? ["none"] : FAULTS.filter((f) => only === undefined || only.includes(f));
const WAVES = 11;
const WAVE_MS = 400;
// Wave 5 crosses 50 %: at wave 6 the first alerts are on their way through the relay, the message
// unit and the SMSC when the fault hits.
const FAULT_AT_WAVE = 6;
const RECOVERY_TIMEOUT_MS = 240_000;
const log = (s: string) => process.stderr.write(`[reliability] ${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const execFileAsync = promisify(execFile);
const zone = new ZonedTime("Asia/Seoul");
const monthLabel = (ms: number) => {
  const f = zone.fields(ms);
  return `${f.year}-${String(f.month).padStart(2, "0")}`;
};
const THIS_MONTH = monthLabel(Date.now());
const LAST_MONTH = (() => {
  const f = zone.fields(Date.now());
  const [y, m] = f.month === 1 ? [f.year - 1, 12] : [f.year, f.month - 1];
  return `${y}-${String(m).padStart(2, "0")}`;
})();

const redis = new LocalRedis({ durable: true });
let platform: Platform;
let producer: Producer;
const runId = randomUUID().slice(0, 8);
const extra = new Set<UnitProcess>();

async function main(): Promise<void> {
  const t0 = Date.now();
  await infraUp({ only: ["postgres", "kafka"], quiet: true });
  await redis.start(0);
  log(`redis of the run on ${redis.url} (append-only file, fsync on every write)`);
  if (SCALE > 0) await createTopic(BILLS_TOPIC);
  platform = new Platform({
    redisUrl: redis.url,
    numbers: rounds.length * LINES + BILLING_LINES + 50,
    unitEnv: {
      batch:
        SCALE > 0
          ? // A million bills: chunks of the default size, a lease short enough to resume soon after
            // the kill, and the bill requests on a topic of the run's own (see scaleRun).
            { BATCH_LEASE_MS: "5000", BATCH_HEARTBEAT_MS: "1000", NOTIFICATION_TOPIC: BILLS_TOPIC }
          : // Small chunks and a short lease: a run long enough to be killed in, resumed soon after.
            { BATCH_CHUNK_SIZE: "1", BATCH_LEASE_MS: "2000", BATCH_HEARTBEAT_MS: "300" },
    },
  });
  await platform.start();
  await platform.alertTemplates();
  await billTemplate();
  producer = await newProducer();
  log(`platform up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (SCALE > 0) {
    const { results, load, figures } = await scaleRun();
    for (const u of crashedUnits()) failures.push(u);
    const report = { ...summary(results, undefined, load, Date.now() - t0), scale: figures };
    report.ok = report.ok && figures.ok;
    await teardown();
    process.stdout.write(`${JSON.stringify(report)}\n`);
    process.exitCode = report.ok ? 0 : 1;
    return;
  }

  const results: Reconciliation[] = [];
  let load: LoadReport | undefined;
  for (const fault of rounds) {
    if (fault === "none" && !SCENARIO) {
      // The operators' RPCs under load from a second process: once with the pipeline idle (the
      // baseline), once while this round's usage flows.
      const idle = await heldLoad();
      let during: Promise<Record<string, LoadStats>> = Promise.resolve({});
      // Started when the round's usage starts (after its lines are seeded).
      results.push(
        await round(fault, () => {
          during = heldLoad();
          during.catch(() => {});
        }),
      );
      load = { idle, busy: await during };
    } else results.push(await round(fault));
  }
  results.push(await billing(!SCENARIO));
  const hostile = SCENARIO ? undefined : await hostileInput(platform, producer);
  results.push(await finalSweep());
  for (const u of crashedUnits()) failures.push(u);
  const report = summary(results, hostile, load, Date.now() - t0);
  await teardown();
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exitCode = report.ok ? 0 : 1;
}

async function billTemplate(): Promise<void> {
  const t = grpcClient(TemplateService, platform.urlOf("message"), await tokenFor("admin"));
  const created = await t.createTemplate({
    name: "invoice-issued",
    channel: Channel.EMAIL,
    locale: "ko-KR",
    subject: "{{month}} 청구서",
    body: "<p>{{month}} 청구 금액은 <b>{{total}}원</b>입니다.</p>",
    variables: [
      { name: "month", type: VariableType.STRING, required: true, example: "2026-11" },
      { name: "total", type: VariableType.MONEY, required: true, example: "60500" },
    ],
  });
  await t.publishTemplate({ templateId: created.template?.templateId as string, version: 1 });
}

async function newProducer(): Promise<Producer> {
  // Its own client's complaints (a broker down is one of the faults) go to stderr, at warn: stdout
  // ends with the JSON line.
  const logger = createLogger({ unit: "reliability", level: "warn", destination: process.stderr });
  const kafka = createKafka({ brokers: KAFKA_BROKERS, clientId: "reliability", logger });
  return createProducer(kafka);
}

/** Sends until the broker takes it (a broker down for a while is a fault the load rides out). */
async function send(messages: Parameters<typeof publish>[1][number]["messages"]): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await publish(producer, [{ topic: platform.topics.usage, messages }]);
      return;
    } catch (e) {
      if (attempt % 10 === 1) log(`publish failed (${(e as Error).message}); retrying`);
      await sleep(500);
      if (attempt % 4 === 0) {
        await producer.disconnect().catch(() => {});
        producer = await newProducer().catch(() => producer);
      }
    }
  }
}

/** `n` new lines through the domain unit, each known to the usage unit with its quota. */
async function seedLines(n: number): Promise<LineUnderTest[]> {
  const usage = grpcClient(UsageService, platform.urlOf("usage"), await tokenFor("operator"));
  const out: LineUnderTest[] = [];
  for (let i = 0; i < n; i++) {
    const l = await platform.line();
    out.push({ subscriptionId: l.subscriptionId, msisdn: l.msisdn, email: l.personal[1] as string, quotaBytes: 0n });
  }
  for (const l of out) {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const u = await usage
        .getLineUsage({ subscriptionId: l.subscriptionId, month: THIS_MONTH })
        .catch(() => undefined);
      if (u?.quotaKnown && u.quotaBytes > 0n) {
        l.quotaBytes = u.quotaBytes;
        break;
      }
      if (Date.now() > deadline) {
        const k = createKnex({ url: platform.url, schema: "domain", poolMax: 1 });
        const outbox = await k.raw(
          "select outbox_id, published_at is not null as published from domain.outbox where key = ?",
          [l.subscriptionId],
        );
        await k.destroy();
        throw new Error(
          `the usage unit never learnt ${l.subscriptionId}'s quota: known ${u?.quotaKnown} quota ${u?.quotaBytes}; outbox ${JSON.stringify(outbox.rows)}`,
        );
      }
      await sleep(200);
    }
  }
  return out;
}

/**
 * Event `seq` of a line is a tenth of the quota plus `seq` bytes: the 5th crosses 50 %, the 8th
 * 80 %, the 10th 100 %; every event's size differs, so a lost event and a doubled one can never
 * cancel out in the line's total.
 */
const eventBytes = (l: LineUnderTest, seq: number) => l.quotaBytes / 10n + BigInt(seq);
const expectedTotal = (l: LineUnderTest) => (l.quotaBytes / 10n) * BigInt(WAVES) + BigInt((WAVES * (WAVES + 1)) / 2);
/** How many events a counter's difference from its total stands for (at least one when it differs). */
const eventsIn = (diff: bigint, l: LineUnderTest) =>
  diff === 0n ? 0 : Math.max(1, Math.round(Number(diff < 0n ? -diff : diff) / Number(l.quotaBytes / 10n)));
/** Every line a round drove, for the final sweep. */
const everyRoundLine: LineUnderTest[] = [];

interface Injected {
  /** Resolves once the fault is over (the part restarted, the peer back); never rejects. */
  over: Promise<void>;
  at: number;
  /** Whether the fault was seen to take effect (a fault that did not is not counted as injected). */
  took: boolean;
  why?: string;
}

/** A fault's aftermath, started now, awaited later: its failure is kept, not left unhandled. */
function settle(i: { at: number; took?: boolean; why?: string }, work: Promise<void>): Injected {
  const out: Injected = { at: i.at, took: i.took ?? true, why: i.why, over: Promise.resolve() };
  out.over = work.then(
    () => undefined,
    (e: Error) => {
      out.took = false;
      out.why = e.message;
      failures.push(`fault recovery failed: ${e.message}`);
    },
  );
  return out;
}
const failures: string[] = [];

/** Set by the teardown: no fault starts after it (a restart would outlive the run). */
let stopping = false;
/** The last fault's work until it is over, which the teardown waits for (90 s at most). */
let faultInFlight: Promise<unknown> | undefined;

async function inject(fault: Fault): Promise<Injected> {
  if (stopping) throw new Error(`not injecting ${fault}: the run is stopping`);
  const injected = injectFault(fault);
  faultInFlight = Promise.race([injected.then((i) => i.over), sleep(90_000)]);
  return injected;
}

async function injectFault(fault: Fault): Promise<Injected> {
  const at = Date.now();
  const restart = async (units: Unit[]) => {
    await Promise.all(units.map((u) => platform.kill(u)));
    log(`  SIGKILLed ${units.join(", ")}`);
    for (const u of ["domain", "usage", "message", "batch"] as Unit[]) if (units.includes(u)) await platform.restart(u);
    log(`  ${units.join(", ")} listening again after ${Date.now() - at} ms`);
  };
  switch (fault) {
    case "none":
      return { at, over: Promise.resolve(), took: false };
    case "kill-usage":
      return settle({ at }, restart(["usage"]));
    case "kill-message":
      return settle({ at }, restart(["message"]));
    case "kill-domain":
      return settle({ at }, restart(["domain"]));
    case "kill-several":
      return settle({ at }, restart(["usage", "message", "domain"]));
    case "kafka": {
      const broker = kafkaBroker();
      process.kill(broker.pid, "SIGKILL");
      log(`  SIGKILLed the Kafka broker (pid ${broker.pid}, started in ${broker.cwd})`);
      return settle(
        { at },
        (async () => {
          const deadline = Date.now() + 30_000;
          while (alive(broker.pid)) {
            if (Date.now() > deadline) throw new Error(`the broker (pid ${broker.pid}) did not die`);
            await sleep(100);
          }
          await sleep(2_000);
          await restartBroker(broker);
          log(`  Kafka back after ${Date.now() - at} ms`);
        })(),
      );
    }
    case "redis":
      await redis.crash();
      log("  SIGKILLed redis-server");
      return settle(
        { at },
        (async () => {
          await sleep(2_000);
          await redis.recover();
          log(`  redis-server back (append-only file replayed) after ${Date.now() - at} ms`);
        })(),
      );
    case "postgres": {
      const version = readdirSync("/etc/postgresql")
        .filter((v) => /^\d+$/.test(v))
        .sort((x, y) => Number(x) - Number(y))
        .at(-1) as string;
      const startedAt = await postmasterStart();
      // Asynchronous: the load goes on while PostgreSQL goes down and comes back.
      const restarting = execFileAsync("pg_ctlcluster", [
        "--skip-systemctl-redirect",
        version,
        "main",
        "restart",
        "-m",
        "fast",
      ]);
      return settle(
        { at },
        (async () => {
          await restarting;
          const now = await postmasterStart();
          if (now === startedAt) throw new Error("PostgreSQL's start time did not change: it was not restarted");
          log(`  PostgreSQL ${version} restarted in ${Date.now() - at} ms`);
        })(),
      );
    }
    case "smsc":
      await platform.smsc.down();
      log(`  SMSC unreachable for ${OUTAGE_MS / 1000} s`);
      return settle(
        { at },
        (async () => {
          await sleep(OUTAGE_MS);
          await platform.smsc.up();
          log("  SMSC back");
        })(),
      );
    case "rebalance": {
      // The second aggregator starts now, in the background: the load does not wait for it.
      const i: Injected = { at, took: false, over: Promise.resolve() };
      const work = (async () => {
        const second = spawnUnit("usage", {
          ...platform.envOf("usage"),
          USAGE_PORT: String(await freePort()),
          METRICS_PORT: "0",
          USAGE_COMPONENTS: "aggregator",
        });
        extra.add(second);
        await waitForLog(second, /unit listening/, 60_000);
        const group = `${platform.groups.usage}-aggregator`;
        const members = await groupMembers(group, 2, 30_000);
        if (members < 2) throw new Error(`the second aggregator never became a member of ${group} (${members})`);
        i.took = true;
        log(`  a second aggregator joined ${group} (${members} members)`);
        // Well past a heartbeat and a rebalance: both members consume for a while.
        await sleep(8_000);
        second.child.kill("SIGTERM");
        const timer = setTimeout(() => second.child.kill("SIGKILL"), 30_000);
        await second.exited;
        clearTimeout(timer);
        extra.delete(second);
        log("  the second aggregator left (SIGTERM)");
      })();
      const settled = settle(i, work);
      i.over = settled.over.then(() => {
        if (settled.why) {
          i.took = false;
          i.why = settled.why;
        }
      });
      return i;
    }
  }
}

/** When PostgreSQL (the server the units use) last started. */
async function postmasterStart(): Promise<string> {
  const k = createKnex({ url: platform.url, schema: "domain", poolMax: 1 });
  try {
    const r = await k.raw<{ rows: { t: string }[] }>("select pg_postmaster_start_time()::text as t");
    return r.rows[0]?.t ?? "";
  } finally {
    await k.destroy();
  }
}

/** Members of a consumer group, once it has `want` (or the time is up). */
async function groupMembers(group: string, want: number, timeoutMs: number): Promise<number> {
  const kafka = createKafka({
    brokers: KAFKA_BROKERS,
    clientId: "reliability-groups",
    logger: createLogger({ unit: "reliability", level: "error", destination: process.stderr }),
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    let n = 0;
    while (Date.now() < deadline) {
      const d = await admin.describeGroups([group]);
      n = d.groups[0]?.members.filter((m) => m.memberAssignment.length > 0).length ?? 0;
      if (n >= want && d.groups[0]?.state === "Stable") return n;
      await sleep(500);
    }
    return n;
  } finally {
    await admin.disconnect();
  }
}

/**
 * The running broker (whichever checkout's `npm run infra:up` started it): its pid, command line
 * and directory, read from /proc, so that it can be started again exactly as it was, on its own
 * data (a checkout that did not start it would otherwise start an empty broker of its own).
 */
function kafkaBroker(): { pid: number; argv: string[]; cwd: string } {
  const brokers: { pid: number; argv: string[]; cwd: string }[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").filter(Boolean);
      if (argv.includes("kafka.Kafka") && alive(Number(entry)))
        brokers.push({ pid: Number(entry), argv, cwd: realpathSync(`/proc/${entry}/cwd`) });
    } catch {
      // A process that ended meanwhile.
    }
  }
  // One broker on this machine serves KAFKA_BROKERS (127.0.0.1:9092); with several, which one
  // is not clear from here, and killing the wrong one would prove nothing.
  if (brokers.length !== 1) throw new Error(`expected one Kafka broker process, found ${brokers.length}`);
  return brokers[0] as { pid: number; argv: string[]; cwd: string };
}

/**
 * Starts the broker again exactly as it ran (its command line, in its checkout, on its data),
 * records its pid where that checkout's `npm run infra:down` looks, and waits until it answers
 * with the platform's topics (a broker that came back empty would fail here).
 */
async function restartBroker(b: { argv: string[]; cwd: string }): Promise<void> {
  mkdirSync(join(b.cwd, ".run"), { recursive: true });
  mkdirSync(join(b.cwd, ".data", "logs"), { recursive: true });
  const out = openSync(join(b.cwd, ".data", "logs", "kafka.out"), "a");
  const child = spawn(b.argv[0] as string, b.argv.slice(1), {
    cwd: b.cwd,
    detached: true,
    stdio: ["ignore", out, out],
  });
  const spawned = new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", reject);
  });
  await spawned.finally(() => closeSync(out));
  child.unref();
  writeFileSync(join(b.cwd, ".run", "kafka.pid"), String(child.pid));
  const kafka = createKafka({
    brokers: KAFKA_BROKERS,
    clientId: "reliability-broker",
    logger: createLogger({ unit: "reliability", level: "fatal", destination: process.stderr }),
  });
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the restarted broker exited (${child.exitCode})`);
    const admin = kafka.admin();
    try {
      await admin.connect();
      const topics = await admin.listTopics();
      if (topics.includes(platform.topics.usage) && topics.includes(platform.topics.notifications)) return;
      throw new Error("the broker answers without the platform's topics");
    } catch (e) {
      if (Date.now() > deadline)
        throw new Error(`the restarted broker did not answer with its topics: ${(e as Error).message}`);
    } finally {
      await admin.disconnect().catch(() => {});
    }
    await sleep(500);
  }
}

/** Running, and not a zombie waiting for its parent. */
const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) [ZX] /.test(stat);
  } catch {
    return false;
  }
};

interface LoadStats {
  calls: number;
  errors: Record<string, number>;
  p50_ms: number;
  p99_ms: number;
}
type LoadReport = { idle: Record<string, LoadStats>; busy: Record<string, LoadStats> };
const loadLines: { subscriptionId: string; phone: string }[] = [];

/** The load client (scripts/lib/reliability/load-client.ts) for LOAD_S seconds; its figures. */
async function heldLoad(): Promise<Record<string, LoadStats>> {
  if (loadLines.length === 0) {
    for (let i = 0; i < 5; i++) {
      const l = await platform.line();
      loadLines.push({ subscriptionId: l.subscriptionId, phone: l.personal[2] as string });
    }
  }
  const p = spawnScript("scripts/lib/reliability/load-client.ts", {
    RELIABILITY_LOAD: JSON.stringify({
      usageUrl: platform.urlOf("usage"),
      domainUrl: platform.urlOf("domain"),
      token: await tokenFor("operator"),
      month: THIS_MONTH,
      lines: loadLines.map((l) => l.subscriptionId),
      phones: loadLines.map((l) => l.phone),
      seconds: LOAD_S,
      concurrency: 8,
    }),
  });
  const timer = setTimeout(() => p.child.kill("SIGKILL"), (LOAD_S + 60) * 1000);
  const code = await p.exited;
  clearTimeout(timer);
  const last = p.stdout().trim().split("\n").at(-1) ?? "";
  if (code !== 0 || !last.startsWith("{"))
    throw new Error(`the load client failed (${code}): ${p.stderr().slice(-2000)}`);
  return JSON.parse(last) as Record<string, LoadStats>;
}

/** A line's usage event `seq` of `bytes`, as the pipeline's producers key it (by line). */
function usageRecord(l: LineUnderTest, seq: number, bytes: bigint) {
  return encodeRecord(
    UsageEventSchema,
    create(UsageEventSchema, {
      eventId: `rel-${runId}-${l.subscriptionId}-${seq}`,
      subscriptionId: l.subscriptionId,
      seq: BigInt(seq),
      bytes,
      occurredAt: timestampFromMs(Date.now()),
      source: "reliability",
    }),
    { key: l.subscriptionId },
  );
}

/** One round: new lines, usage to 110 % in waves with producer duplicates, the fault in the middle. */
async function round(fault: Fault, onLoad?: () => void): Promise<Reconciliation> {
  log(`round ${fault}: seeding ${LINES} lines`);
  const lines = await seedLines(LINES);
  everyRoundLine.push(...lines);
  onLoad?.();
  const usage = grpcClient(UsageService, platform.urlOf("usage"), await tokenFor("operator"));
  const event = (l: LineUnderTest, seq: number) => usageRecord(l, seq, eventBytes(l, seq));
  let sent = 0;
  let duplicates = 0;
  let injected: Injected | undefined;
  const before = platform.smsc.submitted.length;
  for (let wave = 1; wave <= WAVES; wave++) {
    if (wave === FAULT_AT_WAVE) injected = await inject(fault);
    const messages = lines.map((l) => event(l, wave));
    // A producer's retry: every third line's previous event again (same id and seq).
    if (wave > 1) for (const [i, l] of lines.entries()) if (i % 3 === 0) messages.push(event(l, wave - 1));
    duplicates += messages.length - lines.length;
    await send(messages);
    sent += messages.length;
    await sleep(WAVE_MS);
  }
  const fi = injected as Injected;
  await fi.over;
  // Whole again: every counter at its total, every line its three alerts.
  const expected = new Map(lines.map((l) => [l.subscriptionId, expectedTotal(l)]));
  const deadline = Date.now() + RECOVERY_TIMEOUT_MS;
  let used = new Map<string, bigint>();
  for (;;) {
    used = await usedBytes(usage, lines);
    const t = tally(platform.smsc.submitted.slice(before), lines);
    const whole =
      lines.every((l) => used.get(l.subscriptionId) === expected.get(l.subscriptionId)) &&
      alertBalance(t, ALERT_LEVELS).lost === 0;
    if (whole || Date.now() > deadline) break;
    await sleep(250);
  }
  const recovery = Date.now() - fi.at;
  // Late doubles would show now.
  await sleep(3_000);
  used = await usedBytes(usage, lines);
  const t = tally(platform.smsc.submitted.slice(before), lines);
  const a = alertBalance(t, ALERT_LEVELS);
  let lost = 0;
  let doubled = 0;
  let counted = 0;
  for (const l of lines) {
    const diff = (used.get(l.subscriptionId) ?? 0n) - (expected.get(l.subscriptionId) as bigint);
    if (diff < 0n) lost += eventsIn(diff, l);
    else doubled += eventsIn(diff, l);
  }
  counted = lines.length * WAVES - lost + doubled;
  const { delivered, rows } = await deliveredCount(lines);
  // The message unit's own record: exactly one message per alert, whatever the SMSC saw.
  const rowsExtra = Math.max(0, rows - lines.length * ALERT_LEVELS.length);
  const r: Reconciliation = {
    ...blank(`round-${fault}`, fault),
    injected: fault === "none" ? 0 : fi.took ? 1 : 0,
    lines: lines.length,
    events_produced: lines.length * WAVES,
    events_sent: sent,
    duplicates_sent: duplicates,
    events_counted: counted,
    events_lost: lost,
    events_doubled: doubled,
    alerts_expected: lines.length * ALERT_LEVELS.length,
    alerts_sent: a.sent,
    alerts_lost: a.lost,
    alerts_doubled: a.doubled,
    messages_submitted: platform.smsc.submitted.length - before,
    messages_delivered: delivered,
    messages_lost: a.lost,
    messages_doubled: Math.max(a.doubled, rowsExtra),
    recovery_ms: recovery,
  };
  if (fault !== "none" && !fi.took) log(`round ${fault}: THE FAULT DID NOT TAKE EFFECT (${fi.why ?? "?"})`);
  log(
    `round ${fault}: events ${counted}/${r.events_produced} counted (${duplicates} duplicates sent, lost ${lost}, doubled ${doubled}); ` +
      `alerts ${a.sent}/${r.alerts_expected} (lost ${a.lost}, doubled ${a.doubled}); SMS ${r.messages_submitted} submitted, ${delivered} delivered; whole after ${recovery} ms`,
  );
  return r;
}

async function usedBytes(
  usage: ReturnType<typeof grpcClient<typeof UsageService>>,
  lines: LineUnderTest[],
): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  await Promise.all(
    lines.map(async (l) => {
      const u = await usage
        .getLineUsage({ subscriptionId: l.subscriptionId, month: THIS_MONTH })
        .catch(() => undefined);
      if (u) out.set(l.subscriptionId, u.usedBytes);
    }),
  );
  return out;
}

interface DeliveredCount {
  /** Messages the message unit reports DELIVERED (the SMSC's receipt came back). */
  delivered: number;
  /** Messages recorded for the lines. */
  rows: number;
  /**
   * FAILED "outcome unknown": the unit was SIGKILLed between writing the submit_sm and recording
   * the SMSC's answer, so it cannot tell whether the SMSC took it and never sends it again (at
   * most once). Whether it reached the SMSC is counted there, not here.
   */
  unknown: number;
  /** The others, by status (and reason for FAILED), for the log. */
  others: Record<string, number>;
}

/** What the message unit recorded for the lines, once every message has settled (or 30 s). */
async function deliveredCount(lines: LineUnderTest[]): Promise<DeliveredCount> {
  const messages = grpcClient(MessageService, platform.urlOf("message"), await tokenFor("operator"));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const c: DeliveredCount = { delivered: 0, rows: 0, unknown: 0, others: {} };
    for (const l of lines) {
      const r = await messages.listMessages({ subscriptionId: l.subscriptionId, pageSize: 100 }).catch(() => undefined);
      for (const m of r?.messages ?? []) {
        c.rows += 1;
        // An e-mail's last word is the SMTP server's acceptance (no receipts come back).
        if (m.status === DeliveryStatus.DELIVERED || (m.channel === Channel.EMAIL && m.status === DeliveryStatus.SENT))
          c.delivered += 1;
        else if (m.status === DeliveryStatus.FAILED && m.reason.startsWith("outcome unknown")) c.unknown += 1;
        else {
          const k = `${DeliveryStatus[m.status]}${m.reason ? ` (${m.reason})` : ""}`;
          c.others[k] = (c.others[k] ?? 0) + 1;
        }
      }
    }
    if (c.delivered + c.unknown === c.rows || Date.now() > deadline) return c;
    await sleep(500);
  }
}

/** "2 SENT, 1 FAILED (…)" — the messages neither delivered nor of unknown outcome. */
function othersText(others: Record<string, number>): string {
  const e = Object.entries(others);
  return e.length === 0 ? "none other" : e.map(([k, n]) => `${n} ${k}`).join(", ");
}

/**
 * Every round's lines again at the end, after the hostile input and a quiet period: a late
 * duplicate (a message retried after its lease, a batch replayed after a rebalance) or a late
 * loss in an earlier round shows here. Its counts replace the rounds' sums where they are larger.
 */
async function finalSweep(): Promise<Reconciliation> {
  await sleep(SMOKE ? 10_000 : 30_000);
  const usage = grpcClient(UsageService, platform.urlOf("usage"), await tokenFor("operator"));
  const used = await usedBytes(usage, everyRoundLine);
  let lost = 0;
  let doubled = 0;
  for (const l of everyRoundLine) {
    const diff = (used.get(l.subscriptionId) ?? 0n) - expectedTotal(l);
    if (diff < 0n) lost += eventsIn(diff, l);
    else doubled += eventsIn(diff, l);
  }
  const a = alertBalance(tally(platform.smsc.submitted, everyRoundLine), ALERT_LEVELS);
  const { delivered, rows, unknown, others } = await deliveredCount(everyRoundLine);
  const expectedAlerts = everyRoundLine.length * ALERT_LEVELS.length;
  log(
    `final sweep of ${everyRoundLine.length} lines: events lost ${lost}, doubled ${doubled}; alerts ${a.sent}/${expectedAlerts} (lost ${a.lost}, doubled ${a.doubled}); ${rows} messages recorded, ${delivered} delivered, ${unknown} of unknown outcome, ${othersText(others)}`,
  );
  return {
    ...blank("final-sweep", "none"),
    lines: everyRoundLine.length,
    events_produced: everyRoundLine.length * WAVES,
    events_counted: everyRoundLine.length * WAVES - lost + doubled,
    events_lost: lost,
    events_doubled: doubled,
    alerts_expected: expectedAlerts,
    alerts_sent: a.sent,
    alerts_lost: a.lost,
    alerts_doubled: a.doubled,
    messages_submitted: rows,
    messages_delivered: delivered,
    // Lost: not at the SMSC, or at it and then stuck short of a final status (a receipt lost).
    messages_lost: Math.max(a.lost, expectedAlerts - delivered - unknown),
    messages_doubled: Math.max(a.doubled, rows - expectedAlerts),
  };
}

/**
 * Billing of last month for lines active all of it (seeded now, their start moved back 70 days:
 * the scenario's one shift of time), with the batch unit SIGKILLed in the middle of the run and
 * the run resumed; every line one invoice with the plan's fee and VAT, and one bill SMS.
 */
async function billing(kill: boolean): Promise<Reconciliation> {
  log(`billing: seeding ${BILLING_LINES} lines active all of ${LAST_MONTH}`);
  const lines = await seedLines(BILLING_LINES);
  const knex = createKnex({ url: platform.url, schema: "domain", poolMax: 1 });
  const ids = lines.map((l) => l.subscriptionId);
  let feeKrw = 0;
  try {
    await knex.raw(
      "update domain.subscriptions set activated_at = now() - interval '70 days' where subscription_id = any(?)",
      [ids],
    );
    await knex.raw(
      "update domain.subscription_plan set valid = tstzrange(now() - interval '70 days', upper(valid), '[)') where subscription_id = any(?)",
      [ids],
    );
    const plan = await knex("domain.plans").where({ plan_id: "5G-SLIM-8G" }).first<{ monthly_fee_krw: string }>();
    feeKrw = Number(plan.monthly_fee_krw);
  } finally {
    await knex.destroy();
  }
  const mailsBefore = platform.smtp.mails.length;
  const batch = () => tokenFor("operator").then((t) => grpcClient(BillingJobService, platform.urlOf("batch"), t));
  const started = await (await batch()).startBillingJob({ month: LAST_MONTH, partitions: 2 });
  const id = started.execution?.jobExecutionId as bigint;
  const at = Date.now();
  // Killed as soon as it has written something and before it ends: counted as injected only
  // when the run was seen running with some but not all invoices written.
  let killedAt = "";
  let killedMidRun = false;
  const watchUntil = Date.now() + 60_000;
  for (; kill; ) {
    const e = (await (await batch()).getJobExecution({ jobExecutionId: id })).execution;
    const done = (e?.steps ?? []).reduce((s, x) => s + x.writeCount, 0n);
    const running = e !== undefined && [BatchStatus.STARTING, BatchStatus.STARTED].includes(e.status);
    if (e && (!running || done > 0n || Date.now() > watchUntil)) {
      killedAt = `${done} of ${BILLING_LINES} invoices written, ${BatchStatus[e.status]}`;
      killedMidRun = running && done > 0n && done < BigInt(BILLING_LINES);
      break;
    }
    await sleep(5);
  }
  if (kill) {
    await platform.kill("batch");
    log(`billing: batch SIGKILLed at ${killedAt}${killedMidRun ? "" : " — NOT MID-RUN: not counted as injected"}`);
    await platform.restart("batch");
  }
  // The dead run's lease runs out; starting the month again resumes it.
  const completed = await billUntilDone(LAST_MONTH, RECOVERY_TIMEOUT_MS);
  const rows = await (async () => {
    const k = createKnex({ url: platform.url, schema: "billing", poolMax: 1 });
    try {
      return await k("billing.invoices")
        .whereIn("subscription_id", ids)
        .andWhere({ month: LAST_MONTH })
        .select<{ subscription_id: string; total_krw: string }[]>("subscription_id", "total_krw");
    } finally {
      await k.destroy();
    }
  })();
  const expectedTotal = feeKrw + Math.round(feeKrw / 10);
  // One invoice per billed line, each of the plan's fee plus VAT; and none for any other line
  // (the rounds' lines were activated this month).
  const others = await (async () => {
    const k = createKnex({ url: platform.url, schema: "billing", poolMax: 1 });
    try {
      const r = await k("billing.invoices")
        .whereNotIn("subscription_id", ids)
        .andWhere({ month: LAST_MONTH })
        .count<{ n: string }[]>({ n: "*" });
      return Number(r[0]?.n ?? 0);
    } finally {
      await k.destroy();
    }
  })();
  const wrong =
    rows.filter((r) => Number(r.total_krw) !== expectedTotal).length +
    Math.abs(BILLING_LINES - new Set(rows.map((r) => r.subscription_id)).size) +
    others;
  // Each bill one e-mail to the line's customer (the bill template is an e-mail one).
  const mailsTo = () => {
    const count = new Map(lines.map((l) => [l.subscriptionId, 0]));
    const byEmail = new Map(lines.map((l) => [l.email.toLowerCase(), l.subscriptionId]));
    for (const m of platform.smtp.mails.slice(mailsBefore)) {
      for (const to of m.to) {
        const sid = byEmail.get(to.toLowerCase());
        if (sid) count.set(sid, (count.get(sid) ?? 0) + 1);
      }
    }
    return count;
  };
  const t0 = Date.now();
  while ([...mailsTo().values()].some((n) => n === 0) && Date.now() - t0 < 60_000) await sleep(250);
  const recovery = Date.now() - at;
  await sleep(3_000);
  const bills = mailsTo();
  const sent = [...bills.values()].reduce((s, n) => s + n, 0);
  const doubled = [...bills.values()].reduce((s, n) => s + Math.max(0, n - 1), 0);
  const missing = [...bills.values()].filter((n) => n === 0).length;
  const { delivered, rows: billRows } = await deliveredCount(lines);
  const r: Reconciliation = {
    ...blank(kill ? "billing-kill-batch" : "billing", kill ? "kill-batch" : "none"),
    injected: killedMidRun ? 1 : 0,
    lines: lines.length,
    invoices_expected: BILLING_LINES,
    invoices_written: rows.length,
    invoices_wrong: wrong,
    bills_expected: BILLING_LINES,
    bills_sent: sent,
    messages_submitted: platform.smtp.mails.length - mailsBefore,
    messages_delivered: delivered,
    messages_lost: missing,
    // The message unit's own record too: one bill message per line.
    messages_doubled: Math.max(doubled, billRows - BILLING_LINES),
    recovery_ms: recovery,
  };
  log(
    `billing: ${rows.length}/${BILLING_LINES} invoices (${wrong} wrong, ₩${expectedTotal.toLocaleString("en-US")} each expected); ` +
      `bill e-mails ${sent} sent (${missing} missing, ${doubled} doubled), ${delivered} delivered; ` +
      `completed ${completed}; whole after ${recovery} ms`,
  );
  if (!completed) r.invoices_wrong += 1;
  return r;
}

/**
 * Starts the month's billing until it is billed: a run whose owner died is resumed once its lease
 * has lapsed (refused while it still looks alive). Whether it completed within the time.
 */
async function billUntilDone(month: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  const batch = () => tokenFor("operator").then((t) => grpcClient(BillingJobService, platform.urlOf("batch"), t));
  while (Date.now() < deadline) {
    const c = await batch();
    const r = await c.startBillingJob({ month, partitions: 2 }).catch((e: Error) => e);
    if (r instanceof Error) {
      if (/already billed/.test(r.message)) return true;
      await sleep(500);
      continue;
    }
    const next = r.execution?.jobExecutionId as bigint;
    while (Date.now() < deadline) {
      const e = (await c.getJobExecution({ jobExecutionId: next }).catch(() => undefined))?.execution;
      if (e?.status === BatchStatus.COMPLETED) return true;
      if (e && [BatchStatus.FAILED, BatchStatus.STOPPED, BatchStatus.ABANDONED].includes(e.status)) break;
      await sleep(200);
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// The larger run (--scale N): N lines seeded with COPY (as `npm run seed` does; N activations
// through the domain unit's RPCs would take hours), every line reporting through the load
// generator while the faults hit one after the other, a set of hot lines driven past 100 %
// alongside, then every line's total compared with what was produced and the month before billed
// for every line live in it, the batch unit SIGKILLed during it.

const BILLS_TOPIC = `p.bills-${runId}`;

async function createTopic(topic: string): Promise<void> {
  const kafka = createKafka({
    brokers: KAFKA_BROKERS,
    clientId: "reliability-topics",
    logger: createLogger({ unit: "reliability", level: "error", destination: process.stderr }),
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 3, replicationFactor: 1 }] });
  } finally {
    await admin.disconnect();
  }
}

async function deleteTopic(topic: string): Promise<void> {
  const kafka = createKafka({
    brokers: KAFKA_BROKERS,
    clientId: "reliability-topics",
    logger: createLogger({ unit: "reliability", level: "fatal", destination: process.stderr }),
  });
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [topic] }).catch(() => {});
  await admin.disconnect();
}

/** A producer for the generator that rides out a broker down: a failed send is sent again. */
async function retryingProducer(): Promise<{ producer: Producer; close: () => Promise<void> }> {
  let real = await newProducer();
  let retries = 0;
  const producer = {
    send: async (record: Parameters<Producer["send"]>[0]) => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await real.send(record);
        } catch (e) {
          retries += 1;
          if (attempt % 10 === 1) log(`  generator: send failed (${(e as Error).message}); sending again`);
          await sleep(500);
          if (attempt % 4 === 0) {
            await real.disconnect().catch(() => {});
            real = await newProducer().catch(() => real);
          }
        }
      }
    },
  } as unknown as Producer;
  return {
    producer,
    close: async () => {
      if (retries > 0) log(`  generator: ${retries} sends repeated`);
      await real.disconnect().catch(() => {});
    },
  };
}

interface ScaleFigures {
  lines: number;
  hot_lines: number;
  alerting_lines: number;
  seed_s: number;
  database_mb: number;
  quota_load_s: number;
  quotas_loaded: number;
  generator_events: number;
  generator_duplicates: number;
  generator_events_per_s: number;
  load_s: number;
  drain_s: number;
  totals_read: number;
  totals_read_s: number;
  lines_wrong: number;
  foreign_lines: number;
  faults: { fault: string; injected: number; back_ms: number }[];
  billing_s: number;
  billing_killed_at: string;
  invoices: InvoiceCheck;
  bill_records: number;
  bill_lines: number;
  /** Alert SMS the message unit records as of unknown outcome (SIGKILLed mid-submit); at the SMSC once each. */
  sms_outcome_unknown: number;
  ok: boolean;
}

async function scaleRun(): Promise<{ results: Reconciliation[]; load: LoadReport; figures: ScaleFigures }> {
  const N = SCALE;
  const H = HOT_LINES;
  log(`scale: seeding ${N.toLocaleString("en-US")} lines into ${platform.db} (COPY, as npm run seed does)`);
  const s0 = Date.now();
  const seeded = await seed({ url: platform.url, pii: testPii, lines: N, log: (l) => log(`  seed: ${l}`) });
  const seedS = (Date.now() - s0) / 1000;
  {
    const k = createKnex({ url: platform.url, schema: "domain", poolMax: 1 });
    const r = await k.raw<{ rows: { n: string; lo: string; hi: string }[] }>(
      "select count(*) as n, min(subscription_id) as lo, max(subscription_id) as hi from domain.subscriptions",
    );
    await k.destroy();
    const row = r.rows[0];
    if (Number(row?.n) !== N || row?.lo !== lineId(1) || row?.hi !== lineId(N))
      throw new Error(
        `the seed made ${row?.n} lines ${row?.lo}..${row?.hi}, not ${N} lines ${lineId(1)}..${lineId(N)}`,
      );
  }
  log(`scale: seeded in ${seedS.toFixed(0)} s; the usage unit loads every quota from the domain unit (ReloadQuotas)`);
  const q0 = Date.now();
  const usageAdmin = grpcClient(UsageService, platform.urlOf("usage"), await tokenFor("service"));
  const reloaded = await usageAdmin.reloadQuotas({}, { timeoutMs: 1_800_000 });
  const quotaS = (Date.now() - q0) / 1000;
  log(`scale: ${reloaded.linesLoaded} quotas loaded in ${quotaS.toFixed(1)} s`);

  // The hot lines: the last H, outside the generator's range (their events have sequences of
  // their own). Those with a quota must get one SMS per level; unlimited ones none.
  const usage = grpcClient(UsageService, platform.urlOf("usage"), await tokenFor("operator"));
  const contacts = grpcClient(SubscriptionService, platform.urlOf("domain"), await tokenFor("service"));
  const hot: LineUnderTest[] = [];
  for (let first = N - H + 1; first <= N; first += 50) {
    const batch = Array.from({ length: Math.min(50, N + 1 - first) }, (_, j) => lineId(first + j));
    hot.push(
      ...(await Promise.all(
        batch.map(async (subscriptionId) => {
          const u = await usage.getLineUsage({ subscriptionId, month: THIS_MONTH });
          if (!u.quotaKnown) throw new Error(`the usage unit has no quota for ${subscriptionId} after the reload`);
          const c = await contacts.getLineContact({ subscriptionId });
          return {
            subscriptionId,
            msisdn: `82${c.phoneNumber.replace(/\D/g, "").slice(1)}`,
            email: "",
            quotaBytes: u.quotaBytes,
          };
        }),
      )),
    );
  }
  const alerting = hot.filter((l) => l.quotaBytes > 0n);
  log(`scale: ${H} hot lines, ${alerting.length} of them with a quota (the others unlimited: no alerts)`);
  // The operators' RPCs run against the seeded population.
  for (let k = 0; k < 5; k++) loadLines.push({ subscriptionId: lineId(k + 1), phone: personFor(k).phone });
  const idle = await heldLoad();

  // The load: every line but the hot ones SCALE_REPORTS times through the generator (batch
  // records, 1 % producer duplicates, 0.2 % reordered), the hot lines in WAVES waves alongside.
  const model = new UsageModel(N);
  const genLines = N - H;
  const { producer: genProducer, close } = await retryingProducer();
  const gen = new UsageGenerator({
    producer: genProducer,
    topic: platform.topics.usage,
    partitions: 3,
    lines: genLines,
    intervalS: genLines / SCALE_RATE,
    seconds: 0,
    maxEvents: genLines * SCALE_REPORTS,
    mode: "batch",
    batchSize: 200,
    duplicates: 0.01,
    reorder: 0.002,
    late: 0,
    lateSeconds: 0,
    meanBytes: 1_000_000,
    source: "reliability-scale",
    onEvent: (line, _seq, bytes) => model.add(line, bytes),
    onProgress: (p) => {
      if (Math.round(p.elapsedS) % 10 === 0)
        log(
          `  generator: ${p.events.toLocaleString("en-US")} events in ${p.elapsedS.toFixed(0)} s (${Math.round(p.eventsPerS).toLocaleString("en-US")}/s, ${p.behind.toLocaleString("en-US")} behind)`,
        );
    },
  });
  const loadMs = ((genLines * SCALE_REPORTS) / SCALE_RATE) * 1000;
  log(
    `scale: load of ${(genLines * SCALE_REPORTS).toLocaleString("en-US")} events at ${SCALE_RATE.toLocaleString("en-US")}/s (~${Math.round(loadMs / 1000)} s); faults ${SCALE_FAULTS.join(", ")} one after the other`,
  );
  const smsBefore = platform.smsc.submitted.length;
  const l0 = Date.now();
  const generated = gen.run();
  generated.catch(() => {});
  const hotEvent = (l: LineUnderTest, seq: number) => {
    const tenth = (l.quotaBytes > 0n ? l.quotaBytes : 1n << 30n) / 10n;
    return tenth + BigInt(seq);
  };
  let hotDuplicates = 0;
  const hotWaves = (async () => {
    for (let wave = 1; wave <= WAVES; wave++) {
      await sleep(Math.max(0, l0 + (loadMs * wave) / (WAVES + 1) - Date.now()));
      const record = (l: LineUnderTest, seq: number) => usageRecord(l, seq, hotEvent(l, seq));
      const messages = hot.map((l) => record(l, wave));
      for (const l of hot) model.add(lineNumber(l.subscriptionId), Number(hotEvent(l, wave)));
      if (wave > 1) for (const [i, l] of hot.entries()) if (i % 3 === 0) messages.push(record(l, wave - 1));
      hotDuplicates += messages.length - hot.length;
      for (let k = 0; k < messages.length; k += 500) await send(messages.slice(k, k + 500));
    }
  })();
  hotWaves.catch(() => {});
  let busy: Promise<Record<string, LoadStats>> = Promise.resolve({});
  const faults: ScaleFigures["faults"] = [];
  const faulting = (async () => {
    for (const [k, fault] of SCALE_FAULTS.entries()) {
      await sleep(Math.max(0, l0 + (loadMs * (k + 1)) / (SCALE_FAULTS.length + 1) - Date.now()));
      if (k === 1) {
        busy = heldLoad();
        busy.catch(() => {});
      }
      log(`scale: ${fault} at ${((Date.now() - l0) / 1000).toFixed(0)} s of the load`);
      const i = await inject(fault);
      await i.over;
      faults.push({ fault, injected: i.took ? 1 : 0, back_ms: Date.now() - i.at });
      if (!i.took) log(`scale: THE FAULT ${fault} DID NOT TAKE EFFECT (${i.why ?? "?"})`);
    }
  })();
  const g = await generated;
  await hotWaves;
  const loadEnd = Date.now();
  await faulting;
  // Whole is measured from the end of the load or of the last fault, whichever is later.
  const quietFrom = Date.now();
  await close();
  const loadS = (loadEnd - l0) / 1000;
  log(
    `scale: the load ended after ${loadS.toFixed(0)} s: ${g.events.toLocaleString("en-US")} generator events (${Math.round(g.eventsPerS).toLocaleString("en-US")}/s) + ${hotDuplicates + g.duplicates} duplicates`,
  );

  // Whole again: every line's total as produced, every alerting line its three SMS.
  const deadline = Date.now() + 20 * 60_000;
  const settled = async () => {
    const r0 = Date.now();
    const totals = await monthTotals(usageAdmin, THIS_MONTH, N);
    const readS = (Date.now() - r0) / 1000;
    const cmp = model.compare(totals.used, totals.foreign);
    const a = alertBalance(tally(platform.smsc.submitted.slice(smsBefore), alerting), ALERT_LEVELS);
    return { totals, readS, cmp, a };
  };
  let state = await settled();
  while (
    (state.cmp.lost > 0 || state.cmp.doubled > 0 || state.a.lost > 0 || state.cmp.foreign > 0) &&
    Date.now() < deadline
  ) {
    log(
      `  not whole yet: ${state.cmp.linesWrong.toLocaleString("en-US")} lines off (${state.cmp.lost} events short, ${state.cmp.doubled} over); alerts ${state.a.sent}/${alerting.length * 3}`,
    );
    await sleep(5_000);
    state = await settled();
  }
  const drainS = (Date.now() - quietFrom) / 1000;
  log(
    `scale: whole ${drainS.toFixed(1)} s after the load and the last fault ended (${((quietFrom - loadEnd) / 1000).toFixed(0)} s after the load); read again after 10 s for late doubles`,
  );
  await sleep(10_000);
  state = await settled();
  const unexpectedSms = platform.smsc.submitted.length - smsBefore - state.a.sent;
  const { delivered, rows: alertRows, unknown, others } = await deliveredCount(alerting);
  const injectedCount = faults.reduce((s, f) => s + f.injected, 0);
  const usageRound: Reconciliation = {
    ...blank("scale-usage", SCALE_FAULTS.join("+")),
    injected: injectedCount,
    lines: N,
    events_produced: model.produced,
    events_sent: model.produced + g.duplicates + hotDuplicates,
    duplicates_sent: g.duplicates + hotDuplicates,
    events_counted: model.produced - state.cmp.lost + state.cmp.doubled,
    events_lost: state.cmp.lost,
    events_doubled: state.cmp.doubled,
    alerts_expected: alerting.length * ALERT_LEVELS.length,
    alerts_sent: state.a.sent,
    alerts_lost: state.a.lost,
    alerts_doubled: state.a.doubled + Math.max(0, unexpectedSms),
    messages_submitted: platform.smsc.submitted.length - smsBefore,
    messages_delivered: delivered,
    // An SMS whose receipt never came back is lost to the customer's record as much as one never
    // sent; one of unknown outcome is final, and the SMSC count says whether it got there.
    messages_lost: Math.max(state.a.lost, alerting.length * 3 - delivered - unknown),
    messages_doubled: Math.max(state.a.doubled + Math.max(0, unexpectedSms), alertRows - alerting.length * 3),
    recovery_ms: Math.round(drainS * 1000),
  };
  log(
    `scale: events ${usageRound.events_counted.toLocaleString("en-US")}/${model.produced.toLocaleString("en-US")} counted (lost ${state.cmp.lost}, doubled ${state.cmp.doubled}, ${state.cmp.linesWrong} lines off, ${state.cmp.foreign} foreign); ` +
      `alerts ${state.a.sent}/${usageRound.alerts_expected} (lost ${state.a.lost}, doubled ${state.a.doubled}, ${unexpectedSms} to lines that should get none); ${delivered} delivered, ${unknown} of unknown outcome (the message unit SIGKILLed mid-submit), ${othersText(others)}`,
  );

  // Billing of last month for every line live in it, the batch unit SIGKILLed a quarter in.
  const expectedInvoices = await liveLines(platform.url, LAST_MONTH, zone.timeZone);
  log(`scale: billing ${LAST_MONTH} for ${expectedInvoices.toLocaleString("en-US")} lines`);
  const b0 = Date.now();
  const batch = () => tokenFor("operator").then((t) => grpcClient(BillingJobService, platform.urlOf("batch"), t));
  const started = await (await batch()).startBillingJob({ month: LAST_MONTH, partitions: 2 });
  const id = started.execution?.jobExecutionId as bigint;
  let killedAt = "";
  let killedMidRun = false;
  const watchUntil = Date.now() + 10 * 60_000;
  for (;;) {
    const e = (await (await batch()).getJobExecution({ jobExecutionId: id })).execution;
    const written = (e?.steps ?? [])
      .filter((x) => x.stepName.startsWith("bill-lines"))
      .reduce((s, x) => s + x.writeCount, 0n);
    const running = e !== undefined && [BatchStatus.STARTING, BatchStatus.STARTED].includes(e.status);
    if (e && (!running || written >= BigInt(Math.ceil(expectedInvoices / 4)) || Date.now() > watchUntil)) {
      killedAt = `${written} of ${expectedInvoices} invoices written, ${BatchStatus[e.status]}`;
      killedMidRun = running && written > 0n && written < BigInt(expectedInvoices);
      break;
    }
    await sleep(100);
  }
  await platform.kill("batch");
  log(`scale: batch SIGKILLed at ${killedAt}${killedMidRun ? "" : " — NOT MID-RUN: not counted as injected"}`);
  await platform.restart("batch");
  const completed = await billUntilDone(LAST_MONTH, 20 * 60_000);
  const billingS = (Date.now() - b0) / 1000;
  const invoices = await checkInvoices(platform.url, LAST_MONTH, zone.timeZone);
  log(
    `scale: billing ${completed ? "completed" : "DID NOT COMPLETE"} in ${billingS.toFixed(1)} s: ${JSON.stringify(invoices)}`,
  );
  const bills = await countBills({ brokers: KAFKA_BROKERS, topic: BILLS_TOPIC, month: LAST_MONTH, log });
  const invoiced = await (async () => {
    const k = createKnex({ url: platform.url, schema: "billing", poolMax: 1 });
    try {
      const r = await k.raw<{ rows: { s: string }[] }>(
        "select subscription_id as s from billing.invoices where month = ?",
        [LAST_MONTH],
      );
      return new Set(r.rows.map((x) => x.s));
    } finally {
      await k.destroy();
    }
  })();
  let billsMissing = 0;
  for (const sid of invoiced) if (!bills.ids.has(sid)) billsMissing += 1;
  let billsForOthers = 0;
  for (const sid of bills.ids) if (!invoiced.has(sid)) billsForOthers += 1;
  log(
    `scale: ${bills.records.toLocaleString("en-US")} bill requests on ${BILLS_TOPIC} for ${bills.lines.toLocaleString("en-US")} lines: ${billsMissing} invoiced lines without one, ${bills.doubled} lines with two, ${billsForOthers} for lines not invoiced, ${bills.other} other records`,
  );
  const billingRound: Reconciliation = {
    ...blank("scale-billing-kill-batch", "kill-batch"),
    injected: killedMidRun ? 1 : 0,
    lines: expectedInvoices,
    invoices_expected: invoices.expected,
    invoices_written: invoices.written,
    invoices_wrong:
      invoices.missing + invoices.extra + invoices.numbering_gaps + invoices.plain_wrong + (completed ? 0 : 1),
    bills_expected: invoices.written,
    bills_sent: bills.lines,
    messages_submitted: bills.records,
    messages_lost: billsMissing,
    messages_doubled: bills.doubled + billsForOthers,
    recovery_ms: Math.round(billingS * 1000),
  };
  const figures: ScaleFigures = {
    lines: N,
    hot_lines: H,
    alerting_lines: alerting.length,
    seed_s: Number(seedS.toFixed(1)),
    database_mb: Math.round(seeded.databaseBytes / 2 ** 20),
    quota_load_s: Number(quotaS.toFixed(1)),
    quotas_loaded: Number(reloaded.linesLoaded),
    generator_events: g.events,
    generator_duplicates: g.duplicates,
    generator_events_per_s: Math.round(g.eventsPerS),
    load_s: Number(loadS.toFixed(1)),
    drain_s: Number(drainS.toFixed(1)),
    totals_read: state.totals.read,
    totals_read_s: Number(state.readS.toFixed(1)),
    lines_wrong: state.cmp.linesWrong,
    foreign_lines: state.cmp.foreign,
    faults,
    billing_s: Number(billingS.toFixed(1)),
    billing_killed_at: killedAt,
    invoices,
    bill_records: bills.records,
    bill_lines: bills.lines,
    sms_outcome_unknown: unknown,
    // A plain-invoice check that found no plain invoice checked nothing.
    ok: state.cmp.foreign === 0 && bills.other === 0 && completed && invoices.plain_checked > 0,
  };
  return { results: [usageRound, billingRound], load: { idle, busy: await busy }, figures };
}

const SWEPT: (keyof Reconciliation)[] = [
  "events_lost",
  "events_doubled",
  "alerts_lost",
  "alerts_doubled",
  "messages_lost",
  "messages_doubled",
];

function summary(
  results: Reconciliation[],
  hostile: HostileReport | undefined,
  load: LoadReport | undefined,
  ms: number,
) {
  const rounds = results.filter((r) => r.round !== "final-sweep");
  const sweep = results.find((r) => r.round === "final-sweep");
  const billed = results.filter((r) => r.round.startsWith("billing"));
  const plain = (k: keyof Reconciliation) => rounds.reduce((s, r) => s + (r[k] as number), 0);
  // What the final sweep found (every round's lines, once more, at the end) when it found more.
  const sum = (k: keyof Reconciliation) =>
    sweep && SWEPT.includes(k)
      ? Math.max(plain(k), (sweep[k] as number) + billed.reduce((s, r) => s + (r[k] as number), 0))
      : plain(k);
  const table = [
    "| round | injected | events expected / counted | lost / doubled | alerts expected / sent | lost / doubled | invoices expected / written (wrong) | bills expected / sent | SMS submitted / delivered | recovery |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ...results.map(
      (r) =>
        `| ${r.round} | ${r.injected} | ${r.events_produced} / ${r.events_counted} | ${r.events_lost} / ${r.events_doubled} | ${r.alerts_expected} / ${r.alerts_sent} | ${r.alerts_lost} / ${r.alerts_doubled} | ${r.invoices_expected} / ${r.invoices_written} (${r.invoices_wrong}) | ${r.bills_expected} / ${r.bills_sent} | ${r.messages_submitted} / ${r.messages_delivered} | ${(r.recovery_ms / 1000).toFixed(1)} s |`,
    ),
  ];
  process.stderr.write(`\n${table.join("\n")}\n\n`);
  for (const line of hostile?.table ?? []) process.stderr.write(`${line}\n`);
  if (load) {
    process.stderr.write(
      "\n| RPC (8 callers, gRPC) | pipeline | calls | errors | p50 | p99 |\n|---|---|---|---|---|---|\n",
    );
    for (const [phase, figures] of Object.entries(load)) {
      for (const [rpc, f] of Object.entries(figures)) {
        const errors =
          Object.entries(f.errors)
            .map(([c, n]) => `${c} ${n}`)
            .join(", ") || "0";
        process.stderr.write(`| ${rpc} | ${phase} | ${f.calls} | ${errors} | ${f.p50_ms} ms | ${f.p99_ms} ms |\n`);
      }
    }
  }
  const report = {
    events_lost: sum("events_lost"),
    events_doubled: sum("events_doubled"),
    alerts_lost: sum("alerts_lost"),
    alerts_doubled: sum("alerts_doubled"),
    invoices_wrong: sum("invoices_wrong"),
    messages_doubled: sum("messages_doubled"),
    messages_lost: sum("messages_lost"),
    faults_injected: sum("injected"),
    events_produced: sum("events_produced"),
    duplicates_sent: sum("duplicates_sent"),
    alerts_expected: sum("alerts_expected"),
    invoices_expected: sum("invoices_expected"),
    messages_submitted: sum("messages_submitted"),
    messages_delivered: sum("messages_delivered"),
    recovery_ms_median: median(results.filter((r) => r.injected > 0).map((r) => r.recovery_ms)),
    hostile_inputs: hostile?.inputs ?? 0,
    hostile_bad_answers: hostile?.badAnswers ?? 0,
    dead_lettered_expected: hostile?.deadLetteredExpected ?? 0,
    dead_lettered: hostile?.deadLettered ?? 0,
    good_records_after_garbage: hostile?.goodAfterGarbage ?? true,
    units_crashed: hostile?.crashed ?? 0,
    load_errors: load
      ? Object.values(load.busy).reduce((s, f) => s + Object.values(f.errors).reduce((a, b) => a + b, 0), 0)
      : 0,
    load_p50_ms: load ? Object.fromEntries(Object.entries(load.busy).map(([rpc, f]) => [rpc, f.p50_ms])) : {},
    load_p99_ms: load ? Object.fromEntries(Object.entries(load.busy).map(([rpc, f]) => [rpc, f.p99_ms])) : {},
    load_p50_ratio_busy_to_idle: load
      ? Object.fromEntries(
          Object.entries(load.busy).map(([rpc, f]) => [
            rpc,
            Number((f.p50_ms / Math.max(load.idle[rpc]?.p50_ms ?? 0, 0.001)).toFixed(2)),
          ]),
        )
      : {},
    elapsed_s: Number((ms / 1000).toFixed(1)),
    rounds: results.map((r) => ({ round: r.round, injected: r.injected, recovery_ms: r.recovery_ms })),
    failures,
    ok: false,
  };
  report.ok =
    report.events_lost === 0 &&
    report.events_doubled === 0 &&
    report.alerts_lost === 0 &&
    report.alerts_doubled === 0 &&
    report.invoices_wrong === 0 &&
    report.messages_doubled === 0 &&
    report.messages_lost === 0 &&
    report.hostile_bad_answers === 0 &&
    report.dead_lettered === report.dead_lettered_expected &&
    report.good_records_after_garbage &&
    report.units_crashed === 0 &&
    failures.length === 0 &&
    report.load_errors === 0;
  return report;
}

/** The units that exited before the end, each as a failure. */
function crashedUnits(): string[] {
  return [...platform.procs.entries()]
    .filter(([, p]) => p.child.exitCode !== null || p.child.signalCode !== null)
    .map(([u, p]) => `${u} is not running at the end (${p.child.exitCode ?? p.child.signalCode})`);
}

/**
 * Once, however many callers (the end of main, a signal, an unhandled rejection): each waits for
 * the same teardown, so a signal during the normal end's teardown cannot exit half-way through.
 */
let tearing: Promise<void> | undefined;
function teardown(): Promise<void> {
  tearing ??= (async () => {
    stopping = true;
    // A fault in flight (a restart, the second aggregator) ends first, then nothing starts again.
    await faultInFlight?.catch(() => {});
    for (const p of extra) p.child.kill("SIGKILL");
    await producer?.disconnect().catch(() => {});
    if (SCALE > 0) await deleteTopic(BILLS_TOPIC).catch(() => {});
    await platform?.stop().catch((e: Error) => log(`stopping the platform: ${e.message}`));
    await redis.stop();
  })();
  return tearing;
}

/**
 * On any failure: the parts stopped, and a last line that says so. Once: a Ctrl-C reaches the
 * whole process group, so tsx relays a second SIGINT while the first one's teardown runs.
 */
let aborting: Promise<never> | undefined;
function abort(why: string): Promise<never> {
  aborting ??= (async () => {
    process.stderr.write(`reliability: ${why}\n`);
    await teardown().catch(() => {});
    process.stdout.write(`${JSON.stringify({ ok: false, error: why.split("\n")[0], failures })}\n`);
    process.exit(1);
  })();
  return aborting;
}
process.on("unhandledRejection", (e) => void abort(`unhandled: ${(e as Error)?.stack ?? String(e)}`));
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => void abort(`stopped by ${signal}`));

main().catch((e: Error) => abort(e.stack ?? e.message));
