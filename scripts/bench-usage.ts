/**
 * The usage pipeline's benchmark: the load generator (this process), the broker, the usage
 * unit's aggregator and relay (its own process, as deployed) and a Redis of the benchmark's own,
 * all on this machine.
 *
 *   npm run bench:usage -- --lines 1000000 --seconds 60 [--mode batch|single] [--interval 5]
 *       [--batch-size 500] [--duplicates 0.01] [--partitions 12] [--concurrency 4]
 *
 * Prints, once a second, events produced and counted and the consumer lag; then the sustained
 * rate end to end (every event produced → counted, the catching up included), event →
 * notification latency p50 / p99 (from producing the event that crosses a level to the alert
 * on notification.requests), Redis bytes per line, and, measured in the same run as baselines,
 * the raw Kafka consume rate of a consumer that does nothing and the raw rate of the counting
 * script alone. The last line is JSON.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fromBinary } from "@bufbuild/protobuf";
import { NotificationRequestSchema } from "../gen/telco/message/v1/events_pb.js";
import { generateAuthKeys } from "../services/kit/src/auth.js";
import { createKafka, createProducer, dlqTopic } from "../services/kit/src/kafka.js";
import { createLogger } from "../services/kit/src/logger.js";
import { createRedisClient } from "../services/kit/src/redis.js";
import { spec } from "../services/usage/src/config.js";
import { MonthClock } from "../services/usage/src/months.js";
import { LEVELS } from "../services/usage/src/redis/scripts.js";
import { Layout, type UsageInput, UsageStore } from "../services/usage/src/redis/store.js";
import { cli } from "./lib/cli.js";
import { LocalRedis } from "./lib/local-redis.js";
import { lineId, reportBytes, UsageGenerator } from "./lib/usage-generator.js";

const USAGE = `usage: npm run bench:usage -- [--lines N] [--seconds S] [--mode batch|single] [--interval S]
  [--batch-size N] [--duplicates SHARE] [--partitions N] [--concurrency N] [--aggregators N]
  [--baseline-seconds S] [--backlog] [--traced SHARE]
  --backlog: produce the run's reports first (as fast as the producer can), then start the
  aggregators and time how fast they drain it (their capacity, the producer out of the way)
  --traced: share of records with a sampled traceparent (set OTEL_EXPORTER_OTLP_ENDPOINT for the
  aggregators to export their spans): what tracing costs per traced record`;

const { values, num, fail } = cli("bench:usage", USAGE, {
  lines: { type: "string", default: "100000" },
  seconds: { type: "string", default: "60" },
  mode: { type: "string", default: "batch" },
  interval: { type: "string", default: "5" },
  "batch-size": { type: "string", default: "500" },
  duplicates: { type: "string", default: "0.01" },
  partitions: { type: "string", default: "12" },
  concurrency: { type: "string", default: "4" },
  aggregators: { type: "string", default: "1" },
  "baseline-seconds": { type: "string", default: "10" },
  backlog: { type: "boolean", default: false },
  traced: { type: "string", default: "0" },
});
const LINES = num("lines", 100, 10_000_000);
const SECONDS = num("seconds", 1, 3_600);
const INTERVAL = num("interval", 0.1, 3_600, false);
const BATCH = num("batch-size", 1, 10_000);
const DUPS = num("duplicates", 0, 0.5, false);
const PARTITIONS = num("partitions", 1, 256);
const CONCURRENCY = num("concurrency", 1, 64);
const AGGREGATORS = num("aggregators", 1, 16);
const BASELINE_S = num("baseline-seconds", 1, 600);
const BACKLOG = values.backlog === true;
const TRACED = num("traced", 0, 1, false);
const MODE = values.mode;
if (MODE !== "batch" && MODE !== "single") fail(`--mode must be batch or single (got ${JSON.stringify(MODE)})`);

/** CPU seconds a process has used so far (Linux /proc), or NaN when it cannot be read. */
function cpuSeconds(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}
/** Microseconds Redis spent in the counting and quota scripts, from INFO commandstats. */
function scriptMicros(stats: string): number {
  return Number(/cmdstat_evalsha:calls=\d+,usec=(\d+)/.exec(stats)?.[1] ?? 0);
}
function kafkaPid(): number | undefined {
  try {
    return Number.parseInt(readFileSync(".run/kafka.pid", "utf8"), 10) || undefined;
  } catch {
    return undefined;
  }
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const say = (s: string) => process.stderr.write(`[bench] ${s}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const quantile = (xs: number[], q: number) => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] as number;
};

const MEAN_BYTES = 1_500_000;
const TIME_ZONE = process.env.TIME_ZONE ?? "Asia/Seoul";
const BROKERS = (process.env.KAFKA_BROKERS ?? "127.0.0.1:9092").split(",");
const id = `${Date.now().toString(36)}`;
const topics = { usage: `bench-${id}.usage.events`, notifications: `bench-${id}.notification.requests` };
const logger = createLogger({ unit: "bench", level: "warn" });
const kafka = createKafka({ brokers: BROKERS, clientId: "bench-usage", logger });
const admin = kafka.admin();
const redisServer = new LocalRedis();
const units: ChildProcess[] = [];

/**
 * Quotas that make a known share of the lines cross levels during the run: per 100 lines, one
 * ends at ≈ 111 % (three alerts), one at ≈ 85 % (two), one at ≈ 60 % (one); the rest stay far below.
 */
const rounds = Math.max(1, Math.floor(SECONDS / INTERVAL));
const expectedUse = rounds * MEAN_BYTES;
function quotaOf(line: number): number {
  switch (line % 100) {
    case 0:
      return Math.round(expectedUse * 0.9);
    case 1:
      return Math.round(expectedUse / 0.85);
    case 2:
      return Math.round(expectedUse / 0.6);
    default:
      return expectedUse * 10;
  }
}

async function main() {
  await admin
    .connect()
    .catch((e) => fail(`Kafka at ${BROKERS.join(",")} is not reachable (npm run infra:up): ${e.message}`));
  say(`redis: starting a redis-server of the benchmark's own (no persistence)`);
  await redisServer.start(0);
  const redis = createRedisClient(redisServer.url, [], logger, "bench");
  const clock = new MonthClock(TIME_ZONE);
  // The usage unit's defaults (it claims the same layout when it starts).
  const layout = new Layout(spec.USAGE_REDIS_BUCKETS.default, spec.USAGE_REDIS_GROUPS.default);
  const store = new UsageStore(redis, { layout, clock, graceMs: 15 * 86_400_000 });
  await layout.claim(redis);
  const memory = async () => Number(/used_memory:(\d+)/.exec(await redis.info("memory"))?.[1] ?? 0);
  const memEmpty = await memory();

  await admin.createTopics({
    waitForLeaders: true,
    topics: [
      { topic: topics.usage, numPartitions: PARTITIONS, replicationFactor: 1 },
      { topic: dlqTopic(topics.usage), numPartitions: PARTITIONS, replicationFactor: 1 },
      { topic: topics.notifications, numPartitions: 6, replicationFactor: 1 },
    ],
  });

  // Quotas for every line, as the quota component would load them.
  const q0 = Date.now();
  for (let from = 1; from <= LINES; from += 20_000) {
    const updates = [];
    for (let n = from; n < Math.min(LINES + 1, from + 20_000); n++) {
      updates.push({ sid: lineId(n), mode: "plan" as const, lineSequence: 1n, quotaBytes: BigInt(quotaOf(n)) });
    }
    await store.setQuotas(updates);
  }
  const memQuotas = await memory();
  say(`quotas: ${fmt(LINES)} lines in ${((Date.now() - q0) / 1000).toFixed(1)} s`);

  // The aggregator and relay: the usage unit's own processes (AGGREGATORS members of one
  // consumer group; the first also runs the relay).
  const keys = generateAuthKeys();
  // BENCH_PROFILE=<dir>: a CPU profile of each usage unit, written when it exits.
  const profile = process.env.BENCH_PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  const countsOf: Record<string, number>[] = [];
  const exits: Promise<number | null>[] = [];
  const startAggregators = async () => {
    for (let k = 0; k < AGGREGATORS; k++) {
      const child = spawn(process.execPath, [...profile, "--import", "tsx", "services/usage/src/main.ts"], {
        env: {
          ...process.env,
          USAGE_PORT: "0",
          METRICS_PORT: "0",
          USAGE_COMPONENTS: k === 0 ? "aggregator,relay" : "aggregator",
          REDIS_URL: redisServer.url,
          KAFKA_BROKERS: BROKERS.join(","),
          USAGE_EVENTS_TOPIC: topics.usage,
          NOTIFICATION_TOPIC: topics.notifications,
          USAGE_GROUP_PREFIX: `bench-${id}`,
          USAGE_CONSUMER_CONCURRENCY: String(CONCURRENCY),
          USAGE_STATS_INTERVAL_MS: "1000",
          TIME_ZONE,
          AUTH_VERIFY_KEY: keys.verifyKey,
          LOG_LEVEL: "info",
          DRAIN_DELAY_MS: "0",
        },
        stdio: ["ignore", "pipe", "inherit"],
      });
      units.push(child);
      countsOf.push({});
      let listening = false;
      let buf = "";
      child.stdout?.on("data", (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split("\n");
        buf = lines.pop() ?? "";
        for (const l of lines) {
          if (!l.startsWith("{")) continue;
          const e = JSON.parse(l) as Record<string, unknown>;
          if (e.msg === "usage pipeline counts") countsOf[k] = e as Record<string, number>;
          else if (e.msg === "usage unit listening") listening = true;
          else if (e.level === "error" || e.level === "fatal") process.stderr.write(`[usage ${k}] ${l}\n`);
        }
      });
      exits.push(new Promise<number | null>((r) => child.once("exit", (c) => r(c))));
      for (let i = 0; !listening; i++) {
        if (child.exitCode !== null) throw new Error(`usage unit ${k} exited (${child.exitCode}) before listening`);
        if (i > 300) throw new Error(`usage unit ${k} did not start within 30 s`);
        await sleep(100);
      }
    }
  };

  if (!BACKLOG) await startAggregators();
  /** The aggregators' counts, summed. */
  const count = (name: string) => countsOf.reduce((n, c) => n + (c[name] ?? 0), 0);

  // The model of alerts: which produced event crosses which level, and when it was produced.
  const used = new Float64Array(LINES + 1);
  const done = new Uint8Array(LINES + 1);
  const crossedAt = new Map<string, number>();
  const label = clock.monthOf(Date.now()).label;
  const onEvent = (line: number, _seq: number, bytes: number, at: number) => {
    const u = (used[line] as number) + bytes;
    used[line] = u;
    const q = quotaOf(line);
    let level: number | undefined;
    for (let i = LEVELS.length - 1; i >= 0; i--) {
      if (u * 100 >= (LEVELS[i] as number) * q && !((done[line] as number) & (1 << i))) {
        level ??= LEVELS[i];
        done[line] = (done[line] as number) | (1 << i);
      }
    }
    if (level !== undefined) crossedAt.set(`usage-threshold:${lineId(line)}:${label}:${level}`, at);
  };

  const latencies: number[] = [];
  const received = new Set<string>();
  let duplicateAlerts = 0;
  const collector = kafka.consumer({ groupId: `bench-${id}-collector`, maxWaitTimeInMs: 100 });
  await collector.connect();
  await collector.subscribe({ topic: topics.notifications, fromBeginning: true });
  await collector.run({
    eachBatch: async ({ batch }) => {
      const now = Date.now();
      for (const m of batch.messages) {
        if (!m.value) continue;
        const r = fromBinary(NotificationRequestSchema, m.value);
        if (received.has(r.requestId)) {
          duplicateAlerts += 1;
          continue;
        }
        received.add(r.requestId);
        const at = crossedAt.get(r.requestId);
        if (at !== undefined) latencies.push(now - at);
      }
    },
  });

  const producer = await createProducer(kafka, { maxInFlightRequests: 8 });
  let produced = { events: 0, duplicates: 0 };
  const generator = new UsageGenerator({
    producer,
    topic: topics.usage,
    partitions: PARTITIONS,
    lines: LINES,
    // A backlog: the run's reports as fast as the producer can make them.
    intervalS: BACKLOG ? 0.001 : INTERVAL,
    seconds: BACKLOG ? 0 : SECONDS,
    maxEvents: BACKLOG ? LINES * rounds : 0,
    mode: MODE as "batch" | "single",
    batchSize: BATCH,
    duplicates: DUPS,
    reorder: 0,
    traced: TRACED,
    late: 0,
    lateSeconds: 0,
    meanBytes: MEAN_BYTES,
    onEvent,
    onProgress: (p) => {
      produced = { events: p.events, duplicates: p.duplicates };
    },
  });
  const groupId = `bench-${id}-aggregator`;
  const lagNow = async () => {
    const [ends, mine] = await Promise.all([
      admin.fetchTopicOffsets(topics.usage),
      admin.fetchOffsets({ groupId, topics: [topics.usage] }),
    ]);
    let lag = 0;
    for (const e of ends) {
      const c = Number(mine[0]?.partitions.find((p) => p.partition === e.partition)?.offset ?? -1);
      lag += Number(e.high) - Math.max(0, c);
    }
    return lag;
  };
  const seen = () => count("counted") + count("duplicates") + count("replayed") + count("deadLettered");
  const lagSeries: [number, number][] = [];
  const pids = (): Record<string, number[]> => ({
    generator: [process.pid],
    aggregator: units.map((u) => u.pid ?? 0),
    redis: redisServer.pids.slice(0, 1),
    kafka: [kafkaPid() ?? 0],
  });
  const cpuAt = () =>
    Object.fromEntries(Object.entries(pids()).map(([k, list]) => [k, list.reduce((n, pid) => n + cpuSeconds(pid), 0)]));
  let backlogResult: Awaited<ReturnType<typeof generator.run>> | undefined;
  if (BACKLOG) {
    say(`backlog: producing ${fmt(LINES * rounds)} reports first`);
    const b0 = Date.now();
    backlogResult = await generator.run();
    say(
      `backlog: ${fmt(backlogResult.events)} reports in ${((Date.now() - b0) / 1000).toFixed(1)} s; starting the aggregator`,
    );
    await startAggregators();
  }
  await redis.config("RESETSTAT");
  let cpu0 = cpuAt();
  let started = Date.now();
  let monitoring = true;
  let lastSeen = 0;
  let lastAt = started;
  const monitor = (async () => {
    while (monitoring) {
      await sleep(1_000);
      const lag = await lagNow().catch(() => Number.NaN);
      const t = (Date.now() - started) / 1000;
      lagSeries.push([Math.round(t), lag]);
      const s = seen();
      const rate = ((s - lastSeen) * 1000) / (Date.now() - lastAt);
      lastSeen = s;
      lastAt = Date.now();
      say(
        `${t.toFixed(0).padStart(4)} s  produced ${fmt(produced.events + produced.duplicates).padStart(11)}  ` +
          `counted ${fmt(s).padStart(11)} (${fmt(rate).padStart(8)}/s)  lag ${fmt(lag)} records  alerts ${fmt(received.size)}`,
      );
    }
  })();
  say(
    `load: ${fmt(LINES)} lines every ${INTERVAL} s = ${fmt(LINES / INTERVAL)} events/s for ${SECONDS} s, ${MODE}` +
      `${MODE === "batch" ? ` (${BATCH} events per record)` : ""}, ${DUPS * 100} % duplicates, ${PARTITIONS} partitions`,
  );
  if (backlogResult) {
    cpu0 = cpuAt();
    started = Date.now();
  }
  const result = backlogResult ?? (await generator.run());
  produced = { events: result.events, duplicates: result.duplicates };
  const productionEnd = backlogResult ? started : Date.now();
  await producer.disconnect();
  const total = result.events + result.duplicates;
  // Until the aggregator has taken every record produced.
  const drainDeadline = Date.now() + Math.max(120_000, SECONDS * 5_000);
  while (seen() < total && Date.now() < drainDeadline) await sleep(200);
  const drained = Date.now();
  const cpu1 = cpuAt();
  const runScriptUs = scriptMicros(await redis.info("commandstats")) / Math.max(1, total);
  const caughtUp = seen() >= total;
  // And every alert has reached the topic (the relay publishes as the aggregator counts).
  const alertDeadline = Date.now() + 60_000;
  while (received.size < crossedAt.size && Date.now() < alertDeadline) await sleep(200);
  monitoring = false;
  await monitor;
  const memDone = await memory();
  const finalCounts = {
    counted: count("counted"),
    duplicates: count("duplicates"),
    deadLettered: count("deadLettered"),
  };

  for (const u of units) u.kill("SIGTERM");
  await Promise.all(exits);
  units.length = 0;
  await collector.disconnect();

  // Baseline 1: a consumer that does nothing, over the same records, fetched as the aggregator fetches.
  say("baseline: raw Kafka consume of the same records");
  const raw = kafka.consumer({
    groupId: `bench-${id}-raw`,
    maxBytesPerPartition: 4 * 1024 * 1024,
    maxBytes: 32 * 1024 * 1024,
    maxWaitTimeInMs: 200,
  });
  const records = result.records;
  let rawRecords = 0;
  let rawFirst = 0;
  let rawLast = 0;
  await raw.connect();
  await raw.subscribe({ topic: topics.usage, fromBeginning: true });
  await raw.run({
    partitionsConsumedConcurrently: CONCURRENCY,
    eachBatch: async ({ batch }) => {
      if (rawFirst === 0) rawFirst = Date.now();
      rawRecords += batch.messages.length;
      rawLast = Date.now();
    },
  });
  const rawDeadline = Date.now() + BASELINE_S * 1000 + 60_000;
  while (rawRecords < records && Date.now() < rawDeadline) await sleep(50);
  await raw.disconnect();
  const rawSeconds = Math.max(0.001, (rawLast - rawFirst) / 1000);
  const rawRecordsPerS = rawRecords / rawSeconds;
  const rawEventsPerS = (rawRecordsPerS * total) / Math.max(1, records);

  // Baseline 2: the counting script alone, on the same lines and quotas, fed as the aggregator
  // feeds it (a fetched batch's worth of events per apply: one call per line group, with
  // partition positions; CONCURRENCY applies in flight), from inputs built beforehand.
  say("baseline: the counting script alone");
  const month = clock.monthOf(Date.now());
  const perApply = 20_000;
  const sets: UsageInput[][] = [];
  const want = Math.min(6_000_000, Math.max(perApply * CONCURRENCY * 2, BASELINE_S * 200_000));
  for (let g = 0; g < want; g += perApply) {
    const set: UsageInput[] = [];
    for (let k = g; k < g + perApply; k++) {
      const n = 1 + (k % LINES);
      const seq = 1_000_000 + Math.floor(k / LINES);
      set.push({
        sid: lineId(n),
        seq,
        bytes: reportBytes(n, seq, MEAN_BYTES),
        month,
        traceparent: "",
        pos: { offset: k, index: 0, ts: 1 },
      });
    }
    sets.push(set);
  }
  await redis.config("RESETSTAT");
  let scriptEvents = 0;
  const scriptStart = Date.now();
  const scriptEnd = scriptStart + BASELINE_S * 1000;
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < scriptEnd && next < sets.length) {
        const set = sets[next++] as UsageInput[];
        await store.apply(set, "bench-script|0");
        scriptEvents += set.length;
      }
    }),
  );
  const scriptPerS = scriptEvents / ((Date.now() - scriptStart) / 1000);
  const baselineScriptUs = scriptMicros(await redis.info("commandstats")) / Math.max(1, scriptEvents);

  const endToEnd = total / ((drained - started) / 1000);
  const wall = (drained - started) / 1000;
  /** Cores each part used on average while the events went through (1 = one core). */
  const cores = Object.fromEntries(
    Object.keys(cpu0).map((k) => [k, Number((((cpu1[k] as number) - (cpu0[k] as number)) / wall).toFixed(2))]),
  );
  const perEvent = Object.fromEntries(
    Object.keys(cpu0).map((k) => [k, Number(((((cpu1[k] as number) - (cpu0[k] as number)) * 1e6) / total).toFixed(2))]),
  );
  const bytesPerLine = (memDone - memEmpty) / LINES;
  const summary = {
    mode: MODE,
    lines: LINES,
    aggregators: AGGREGATORS,
    seconds: SECONDS,
    target_events_per_s: Math.round(LINES / INTERVAL),
    produced_events: total,
    produced_per_s: Math.round(total / (backlogResult ? result.seconds : (productionEnd - started) / 1000)),
    counted_events: finalCounts.counted ?? 0,
    duplicates_dropped: finalCounts.duplicates ?? 0,
    dead_lettered: finalCounts.deadLettered ?? 0,
    caught_up: caughtUp,
    events_per_s: Math.round(endToEnd),
    drain_s: Number(((drained - productionEnd) / 1000).toFixed(1)),
    lag_max_records: Math.max(0, ...lagSeries.map(([, l]) => (Number.isFinite(l) ? l : 0))),
    alerts_expected: crossedAt.size,
    alerts_received: received.size,
    alerts_republished: duplicateAlerts,
    // From producing the crossing event to its alert; not measured on a backlog (it would time the wait).
    p50_ms: BACKLOG || latencies.length === 0 ? null : Math.round(quantile(latencies, 0.5)),
    p99_ms: BACKLOG || latencies.length === 0 ? null : Math.round(quantile(latencies, 0.99)),
    backlog: BACKLOG,
    traced: TRACED,
    tracing: Boolean(process.env.OTEL_EXPORTER_OTLP_ENDPOINT),
    bytes_per_line: Math.round(bytesPerLine),
    quota_bytes_per_line: Math.round((memQuotas - memEmpty) / LINES),
    baseline_kafka_per_s: Math.round(rawEventsPerS),
    baseline_kafka_records_per_s: Math.round(rawRecordsPerS),
    baseline_redis_per_s: Math.round(scriptPerS),
    redis_script_us_per_event: Number(runScriptUs.toFixed(2)),
    baseline_redis_script_us_per_event: Number(baselineScriptUs.toFixed(2)),
    cpu_cores: cores,
    cpu_us_per_event: perEvent,
    ratio_to_kafka: Number((endToEnd / rawEventsPerS).toFixed(3)),
    ratio_to_redis: Number((endToEnd / scriptPerS).toFixed(3)),
  };
  process.stdout.write(
    [
      "",
      `usage pipeline, ${MODE}, ${fmt(LINES)} lines, ${SECONDS} s (target ${fmt(summary.target_events_per_s)} events/s)`,
      `  produced            ${fmt(total)} events (${fmt(summary.produced_per_s)}/s), ${fmt(result.records)} records`,
      `  counted             ${fmt(summary.counted_events)}, ${fmt(summary.duplicates_dropped)} duplicates dropped, ${fmt(summary.dead_lettered)} dead-lettered`,
      BACKLOG
        ? `  drained             ${fmt(endToEnd)} events/s by the aggregator from a backlog${caughtUp ? "" : " (NOT caught up)"}`
        : `  end to end          ${fmt(endToEnd)} events/s sustained (drain ${summary.drain_s} s after production ended${caughtUp ? "" : "; NOT caught up"})`,
      `  lag (records)       ${lagSeries.map(([t, l]) => `${t}s:${fmt(l)}`).join(" ")}`,
      `  alerts              ${fmt(received.size)} of ${fmt(crossedAt.size)} expected, ${duplicateAlerts} re-published`,
      summary.p99_ms === null
        ? `  event → alert       not measured (${BACKLOG ? "backlog run" : "no alert in the run"})`
        : `  event → alert       p50 ${summary.p50_ms} ms, p99 ${summary.p99_ms} ms (${fmt(latencies.length)} alerts)`,
      `  redis               ${summary.bytes_per_line} B/line (quotas alone ${summary.quota_bytes_per_line} B/line)`,
      `  cpu (cores)         ${Object.entries(cores)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")} of ${availableParallelism()}`,
      `  cpu (µs/event)      ${Object.entries(perEvent)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")}`,
      `  baseline kafka      ${fmt(rawEventsPerS)} events/s (${fmt(rawRecordsPerS)} records/s) by a consumer that does nothing`,
      `  baseline redis      ${fmt(scriptPerS)} events/s by the counting script alone (${CONCURRENCY} applies of ${fmt(perApply)} in flight; ${baselineScriptUs.toFixed(2)} µs/event inside Redis)`,
      `  script in the run   ${runScriptUs.toFixed(2)} µs/event inside Redis (one Redis core: ${fmt(1e6 / runScriptUs)} events/s at most)`,
      `  ratios              ${summary.ratio_to_kafka} of raw Kafka, ${summary.ratio_to_redis} of the script alone`,
      "",
    ].join("\n"),
  );
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  redis.disconnect();
}

async function cleanup() {
  for (const u of units) u.kill("SIGKILL");
  await admin.deleteTopics({ topics: [topics.usage, dlqTopic(topics.usage), topics.notifications] }).catch(() => {});
  await admin.disconnect().catch(() => {});
  await redisServer.stop();
}

process.once("SIGINT", () => {
  say("interrupted: cleaning up");
  void cleanup().then(() => process.exit(130));
});
main()
  .then(cleanup, async (e) => {
    process.stderr.write(`bench:usage: ${(e as Error).stack ?? e}\n`);
    await cleanup();
    process.exitCode = 1;
  })
  .then(() => process.exit());
