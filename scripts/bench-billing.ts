/**
 * `npm run bench:billing -- --lines 1000000`: bills a month of the seeded lines (npm run seed)
 * with the real job: the usage unit's totals (a usage unit in this process on a Redis database of
 * its own, filled with a month of usage for half the lines first), PostgreSQL, Kafka for the bill
 * messages (a topic of the bench's own, not notification.requests). Prints progress, the time of
 * each step, invoices per second, and a baseline measured in the same run: PostgreSQL writing the
 * same invoices and lines with nothing computed (generate_series into unlogged copies of the
 * tables). The last line is JSON.
 *
 *   npm run bench:billing -- --lines 1000000 [--month 2026-11] [--partitions N] [--chunk-size N] [--reset]
 *
 * DATABASE_URL (default the local telco database) must hold the seed. The month defaults to the
 * one before this one, the month the seed gives mid-month changes; --reset forgets an earlier
 * billing of that month in that database first (its invoices, runs and close), and without it a
 * month already billed is refused.
 */
import { availableParallelism } from "node:os";
import { Kafka, logLevel } from "kafkajs";
import pg from "pg";
import { UsageService } from "../gen/telco/usage/v1/usage_pb.js";
import { BillingJob } from "../services/batch/src/billing/job.js";
import { invoiceNotice } from "../services/batch/src/billing/wiring.js";
import { TokenVerifier } from "../services/kit/src/auth.js";
import { createKafka, createProducer } from "../services/kit/src/kafka.js";
import { createLogger } from "../services/kit/src/logger.js";
import { createRedis, redisReady } from "../services/kit/src/redis.js";
import { ServiceTokens, unitClient } from "../services/kit/src/unit-client.js";
import { ZonedTime } from "../services/kit/src/zoned-time.js";
import { MonthClock } from "../services/usage/src/months.js";
import { Layout, UsageStore } from "../services/usage/src/redis/store.js";
import { policy as usagePolicy } from "../services/usage/src/routes.js";
import { createServer as createUsageServer } from "../services/usage/src/server.js";
import { forgetMonth } from "./lib/billing.js";
import { cli } from "./lib/cli.js";
// @ts-expect-error: a plain .mjs helper shared with the start script
import { devKeys } from "./lib/dev-keys.mjs";

const USAGE = "usage: npm run bench:billing -- --lines N [--month YYYY-MM] [--partitions N] [--chunk-size N] [--reset]";
const { values, num, fail } = cli("bench:billing", USAGE, {
  lines: { type: "string", default: "1000000" },
  month: { type: "string" },
  partitions: { type: "string", default: String(availableParallelism()) },
  "chunk-size": { type: "string", default: "1000" },
  reset: { type: "boolean", default: false },
});
const LINES = num("lines", 1, 50_000_000);
const PARTITIONS = num("partitions", 1, 64);
const CHUNK = num("chunk-size", 1, 20_000);
const TZ = process.env.TIME_ZONE ?? "Asia/Seoul";
const zone = new ZonedTime(TZ);
const now = zone.fields(Date.now());
const prev = now.month === 1 ? [now.year - 1, 12] : [now.year, now.month - 1];
const MONTH = (values.month as string | undefined) ?? `${prev[0]}-${String(prev[1]).padStart(2, "0")}`;
if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(MONTH)) fail(`--month must be YYYY-MM (got ${JSON.stringify(MONTH)})`);
const DB = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/telco";
const REDIS = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379/11";
const BROKERS = (process.env.KAFKA_BROKERS ?? "127.0.0.1:9092").split(",");
const TOPIC = "bench.billing.notification.requests";
const log = (s: string) => process.stderr.write(`[bench:billing] ${s}\n`);
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

const pool = new pg.Pool({ connectionString: DB, max: PARTITIONS + 4, application_name: "bench-billing" });
const logger = createLogger({ unit: "batch", level: process.env.LOG_LEVEL ?? "warn", destination: process.stderr });

async function billable(): Promise<number> {
  const [y, m] = MONTH.split("-").map(Number) as [number, number];
  const start = new Date(zone.instant(y, m, 1));
  const end = new Date(zone.instant(m === 12 ? y + 1 : y, m === 12 ? 1 : m + 1, 1));
  const r = await pool.query<{ n: number }>(
    "select count(*)::int n from domain.subscriptions where activated_at < $1 and (terminated_at is null or terminated_at > $2)",
    [end, start],
  );
  return r.rows[0]?.n ?? 0;
}

/** PostgreSQL writing as many invoices and lines as the job wrote, nothing computed: the floor. */
async function baseline(invoices: number, lines: number): Promise<number> {
  const c = await pool.connect();
  try {
    await c.query("drop table if exists pg_temp.b_inv, pg_temp.b_lines");
    await c.query(
      "create temp table b_inv (like billing.invoices including defaults including constraints including indexes)",
    );
    await c.query(
      "create temp table b_lines (like billing.invoice_lines including defaults including constraints including indexes)",
    );
    const per = Math.max(1, Math.round(lines / Math.max(invoices, 1)));
    const t0 = performance.now();
    for (let from = 0; from < invoices; from += CHUNK) {
      const to = Math.min(invoices, from + CHUNK);
      await c.query("begin");
      await c.query(
        `insert into b_inv (invoice_id, invoice_number, subscription_id, month, subtotal_krw, vat_krw, total_krw, issued_at, due_date, job_execution_id, used_bytes)
         select md5(g::text)::uuid, $3 || '-' || lpad(g::text, 7, '0'), 'B' || g, $3, 1000, 100, 1100, now(), current_date, 0, 0
           from generate_series($1::int, $2::int) g`,
        [from + 1, to, MONTH],
      );
      await c.query(
        `insert into b_lines (invoice_id, line_no, kind, description, amount_krw, ref_id)
         select md5(g::text)::uuid, k, 'plan_fee', '5G 스탠다드 110GB (11/01-11/30, 30/30일)', 1000, '5G-STD-110G'
           from generate_series($1::int, $2::int) g, generate_series(1, $3::int) k`,
        [from + 1, to, per],
      );
      await c.query("commit");
    }
    return (performance.now() - t0) / 1000;
  } finally {
    await c.query("drop table if exists pg_temp.b_inv, pg_temp.b_lines").catch(() => {});
    c.release();
  }
}

async function main() {
  const have = await billable().catch((e: Error) => {
    throw new Error(
      `cannot read the domain's lines in ${DB.replace(/\/\/[^@]*@/, "//")}: ${e.message} (npm run migrate; npm run seed)`,
    );
  });
  if (have < LINES * 0.95) {
    fail(
      `${MONTH} has ${fmt(have)} billable lines in this database, fewer than --lines ${fmt(LINES)}: run npm run seed -- --lines ${LINES} first`,
    );
  }
  const billed = await pool.query("select 1 from billing.invoices where month = $1 limit 1", [MONTH]);
  if (billed.rowCount && !values.reset)
    fail(`${MONTH} is already billed in this database: --reset forgets its billing first`);
  if (values.reset) {
    log(`--reset: forgetting ${MONTH}'s billing`);
    await forgetMonth(pool, MONTH);
    // A month of rows deleted: vacuumed, so that runs after a --reset compare with a first one.
    await pool.query("vacuum (analyze) billing.invoices, billing.invoice_lines, billing.usage_snapshot");
  }

  // The usage unit: its real store on a Redis database of the bench's own, over gRPC.
  const keys = devKeys(() => {}) as Record<string, string>;
  const redis = createRedis(REDIS, logger, "bench");
  await redisReady(redis, REDIS);
  await redis.flushdb();
  const store = new UsageStore(redis, {
    layout: new Layout(8192, 256),
    clock: new MonthClock(TZ),
    graceMs: 15 * 86_400_000,
    openMaxMs: 400 * 86_400_000,
  });
  const usage = createUsageServer(
    { store },
    {
      logger,
      drainDelayMs: 0,
      drainTimeoutMs: 2_000,
      auth: { verifier: await TokenVerifier.fromPublicKey(keys.AUTH_VERIFY_KEY as string), policy: usagePolicy },
    },
  );
  const usageAt = await usage.listen(0);
  const month = store.clock.parse(MONTH);
  const ids = await pool.query<{ subscription_id: string }>(
    "select subscription_id from domain.subscriptions order by subscription_id",
  );
  let t = performance.now();
  let batch: { sid: string; seq: number; bytes: number; month: typeof month; traceparent: string }[] = [];
  let n = 0;
  for (const [i, r] of ids.rows.entries()) {
    if (i % 2 !== 0) continue;
    // 0.5-12 GiB: the 2 GB and 8 GB plans go over their quota, the others stay under.
    batch.push({
      sid: r.subscription_id,
      seq: 1,
      bytes: 2 ** 29 + ((i * 2_654_435_761) % 2 ** 32) * 3,
      month,
      traceparent: "",
    });
    if (batch.length === 4000) {
      await store.apply(batch);
      n += batch.length;
      batch = [];
    }
  }
  if (batch.length) await store.apply(batch);
  n += batch.length;
  log(`usage of ${fmt(n)} lines counted in ${((performance.now() - t) / 1000).toFixed(1)} s (${REDIS})`);

  const kafka = new Kafka({ clientId: "bench-billing", brokers: BROKERS, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [TOPIC] }).catch(() => {});
  await new Promise((r) => setTimeout(r, 500));
  await admin.createTopics({
    waitForLeaders: true,
    topics: [{ topic: TOPIC, numPartitions: 6, replicationFactor: 1 }],
  });
  const producer = await createProducer(createKafka({ brokers: BROKERS, clientId: "bench-billing", logger }), {
    maxInFlightRequests: 5,
  });
  const client = unitClient(
    UsageService,
    usageAt.url,
    await ServiceTokens.create(keys.AUTH_SIGNING_KEY as string, "batch"),
  );
  const job = new BillingJob({
    pool,
    logger,
    timeZone: TZ,
    partitions: PARTITIONS,
    chunkSize: CHUNK,
    leaseMs: 30_000,
    heartbeatMs: 5_000,
    dueDay: 25,
    usageTotals: async function* (m) {
      for await (const p of client.streamMonthTotals({ month: m, pageSize: 10_000 })) yield p.totals;
    },
    lateUsage: async function* () {
      for await (const p of client.streamLateUsage({ pageSize: 10_000 })) yield p.usage;
    },
    closeUsageMonth: async (m) => {
      await client.closeMonth({ month: m });
    },
    notice: invoiceNotice,
    publish: async (records) => {
      await producer.send({
        topic: TOPIC,
        acks: -1,
        messages: records.map((r) => ({ key: r.key, value: Buffer.from(r.value), headers: r.headers })),
      });
    },
  });

  log(`billing ${MONTH}: ${fmt(have)} lines, ${PARTITIONS} partitions, chunks of ${CHUNK}`);
  t = performance.now();
  const { executionId } = await job.start(MONTH, PARTITIONS);
  const done = job.run(executionId);
  let finished = false;
  void done.finally(() => {
    finished = true;
  });
  while (!finished) {
    await Promise.race([done, new Promise((r) => setTimeout(r, 5_000))]);
    if (finished) break;
    const p = await pool.query<{ n: number }>("select count(*)::int n from billing.invoices where month = $1", [MONTH]);
    const s = (performance.now() - t) / 1000;
    log(`${fmt(p.rows[0]?.n ?? 0)}/${fmt(have)} invoices after ${s.toFixed(0)} s (${fmt((p.rows[0]?.n ?? 0) / s)}/s)`);
  }
  const seconds = (performance.now() - t) / 1000;
  const e = await pool.query<{ status: string; exit_message: string }>(
    "select status, exit_message from billing.job_execution where job_execution_id = $1",
    [executionId],
  );
  if (e.rows[0]?.status !== "COMPLETED")
    throw new Error(`the job ended ${e.rows[0]?.status}: ${e.rows[0]?.exit_message}`);
  const steps = await pool.query<{ step_name: string; s: number }>(
    "select step_name, extract(epoch from ended_at - started_at)::float8 s from billing.step_execution where job_execution_id = $1",
    [executionId],
  );
  const stepS = (re: RegExp) => Math.max(0, ...steps.rows.filter((r) => re.test(r.step_name)).map((r) => r.s));
  const counts = await pool.query<{ invoices: number; lines: number }>(
    `select count(*)::int invoices, (select count(*)::int from billing.invoice_lines l join billing.invoices i using (invoice_id) where i.month = $1) lines
       from billing.invoices where month = $1`,
    [MONTH],
  );
  const invoices = counts.rows[0]?.invoices ?? 0;
  const invoiceLines = counts.rows[0]?.lines ?? 0;
  const bill = stepS(/^bill-lines/);
  log(
    `${MONTH}: ${fmt(invoices)} invoices (${fmt(invoiceLines)} invoice lines) in ${seconds.toFixed(1)} s = ${fmt(invoices / seconds)} invoices/s; ` +
      `snapshot ${stepS(/^snapshot/).toFixed(1)} s, partitions ${bill.toFixed(1)} s (${fmt(invoices / bill)}/s), bill messages ${stepS(/^notify/).toFixed(1)} s, close ${stepS(/^close/).toFixed(1)} s`,
  );
  log("baseline: PostgreSQL writing the same rows in the same chunks, nothing computed or read...");
  const floor = await baseline(invoices, invoiceLines);
  log(
    `baseline: ${floor.toFixed(1)} s (${fmt(invoices / floor)} invoices/s); the partitions take ${(bill / floor).toFixed(2)}× that`,
  );

  await producer.disconnect();
  await admin.deleteTopics({ topics: [TOPIC] }).catch(() => {});
  await admin.disconnect();
  await usage.drain();
  redis.disconnect();
  await pool.end();
  process.stdout.write(
    `${JSON.stringify({
      month: MONTH,
      lines: have,
      invoices,
      invoice_lines: invoiceLines,
      seconds: Number(seconds.toFixed(2)),
      invoices_per_s: Math.round(invoices / seconds),
      partitions: PARTITIONS,
      chunk_size: CHUNK,
      snapshot_s: Number(stepS(/^snapshot/).toFixed(2)),
      bill_s: Number(bill.toFixed(2)),
      notify_s: Number(stepS(/^notify/).toFixed(2)),
      close_s: Number(stepS(/^close/).toFixed(2)),
      baseline_write_s: Number(floor.toFixed(2)),
      bill_to_baseline: Number((bill / floor).toFixed(2)),
    })}\n`,
  );
}

main().catch(async (e) => {
  process.stderr.write(`bench:billing: ${(e as Error).message}\n`);
  await pool.end().catch(() => {});
  process.exit(1);
});
