/**
 * Load generator — the "product server": N lines, each reporting its usage every T seconds to
 * usage.events, with duplicates, reordering, late reports and a month-boundary mode on demand.
 *
 *   npm run load:usage -- --lines 100000 --interval 5 --seconds 60 [--mode single|batch]
 *       [--batch-size 500] [--duplicates 0.01] [--reorder 0] [--late 0 --late-seconds 30]
 *       [--month-boundary] [--mean-bytes 1500000] [--first-line 1] [--topic usage.events]
 *
 * Progress once a second on stderr; the last line on stdout is JSON. KAFKA_BROKERS as the units.
 */
import { createKafka, createProducer } from "../services/kit/src/kafka.js";
import { createLogger } from "../services/kit/src/logger.js";
import { TOPICS } from "../services/kit/src/topics.js";
import { MonthClock } from "../services/usage/src/months.js";
import { cli } from "./lib/cli.js";
import { type GeneratorOptions, UsageGenerator } from "./lib/usage-generator.js";

const USAGE = `usage: npm run load:usage -- [--lines N] [--interval SECONDS] [--seconds S (0 = until Ctrl-C)]
  [--mode single|batch] [--batch-size N] [--duplicates SHARE] [--reorder SHARE]
  [--late SHARE] [--late-seconds S] [--month-boundary] [--mean-bytes N] [--first-line N] [--topic NAME]`;

const {
  values: args,
  num,
  fail,
} = cli("load:usage", USAGE, {
  lines: { type: "string", default: "100000" },
  interval: { type: "string", default: "5" },
  seconds: { type: "string", default: "60" },
  mode: { type: "string", default: "batch" },
  "batch-size": { type: "string", default: "500" },
  duplicates: { type: "string", default: "0" },
  reorder: { type: "string", default: "0" },
  late: { type: "string", default: "0" },
  "late-seconds": { type: "string", default: "30" },
  "month-boundary": { type: "boolean", default: false },
  "mean-bytes": { type: "string", default: "1500000" },
  "first-line": { type: "string", default: "1" },
  topic: { type: "string", default: TOPICS.usageEvents },
});

const mode = args.mode === "single" || args.mode === "batch" ? args.mode : undefined;
if (!mode) fail(`--mode must be single or batch (got ${JSON.stringify(args.mode)})`);
const timeZone = process.env.TIME_ZONE ?? "Asia/Seoul";
const clock = new MonthClock(timeZone);

const logger = createLogger({ unit: "load", level: process.env.LOG_LEVEL ?? "warn" });
const kafka = createKafka({
  brokers: (process.env.KAFKA_BROKERS ?? "127.0.0.1:9092").split(","),
  clientId: "usage-load",
  logger,
});
const admin = kafka.admin();
await admin.connect();
const topic = String(args.topic);
const meta = await admin.fetchTopicMetadata({ topics: [topic] }).catch(() => undefined);
await admin.disconnect();
const partitions = meta?.topics[0]?.partitions.length ?? 0;
if (partitions === 0)
  fail(`topic ${topic} does not exist on ${process.env.KAFKA_BROKERS ?? "127.0.0.1:9092"} (npm run infra:up makes it)`);

const producer = await createProducer(kafka, { maxInFlightRequests: 8 });
const seconds = num("seconds", 0, 86_400 * 30);
const options: GeneratorOptions = {
  producer,
  topic,
  partitions,
  lines: num("lines", 1, 10_000_000),
  intervalS: num("interval", 0.01, 3_600, false),
  seconds,
  mode: mode as "single" | "batch",
  batchSize: num("batch-size", 1, 10_000),
  duplicates: num("duplicates", 0, 1, false),
  reorder: num("reorder", 0, 1, false),
  late: num("late", 0, 1, false),
  lateSeconds: num("late-seconds", 0, 3_600, false),
  meanBytes: num("mean-bytes", 1, 2 ** 30),
  firstLine: num("first-line", 0, 9_000_000_000),
  // The boundary of this month: the run's first half is dated last month, its second half this month.
  boundaryMs: args["month-boundary"] ? clock.monthOf(Date.now()).startMs : undefined,
  onProgress: (p) =>
    process.stderr.write(
      `[load] ${p.elapsedS.toFixed(0).padStart(4)} s  ${p.events.toLocaleString("en-US").padStart(12)} events  ` +
        `${Math.round(p.eventsPerS).toLocaleString("en-US").padStart(9)} events/s  ${p.records.toLocaleString("en-US")} records` +
        `${p.behind > 0 ? `  ${p.behind.toLocaleString("en-US")} behind schedule` : ""}\n`,
    ),
};
if (options.boundaryMs !== undefined && seconds === 0) fail("--month-boundary needs --seconds > 0");
if (options.reorder + options.late > 1) fail("--reorder and --late must add up to at most 1");
process.stderr.write(
  `[load] ${options.lines.toLocaleString("en-US")} lines every ${options.intervalS} s = ` +
    `${Math.round(options.lines / options.intervalS).toLocaleString("en-US")} events/s to ${topic} (${partitions} partitions, ${mode})\n`,
);
const generator = new UsageGenerator(options);
process.once("SIGINT", () => generator.stop());
process.once("SIGTERM", () => generator.stop());
try {
  const r = await generator.run();
  process.stdout.write(
    `${JSON.stringify({
      events: r.events,
      records: r.records,
      duplicates_sent: r.duplicates,
      seconds: Number(r.seconds.toFixed(2)),
      events_per_s: Math.round(r.eventsPerS),
      bytes: r.bytes,
    })}\n`,
  );
} catch (e) {
  process.stderr.write(`load:usage: ${(e as Error).message}\n`);
  process.exitCode = 1;
} finally {
  await producer.disconnect();
}
