import { createHash, randomBytes } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { type Admin, type Consumer, Kafka, logLevel } from "kafkajs";
import pg from "pg";
import { NotificationRequestSchema } from "../../../gen/telco/message/v1/events_pb.js";
import { UsageService } from "../../../gen/telco/usage/v1/usage_pb.js";
import { forgetMonth } from "../../../scripts/lib/billing.js";
import { migrateAll } from "../../../scripts/migrate.js";
import { AUTH_ENV, AUTH_KEYS, verifier } from "../../../test/support/auth.js";
import { KAFKA_BROKERS, testLogger, unique } from "../../../test/support/env.js";
import { usageStore } from "../../../test/support/usage.js";
import { createKafka, createProducer } from "../../kit/src/kafka.js";
import { createRedis, redisReady } from "../../kit/src/redis.js";
import type { Listening, RpcServer } from "../../kit/src/server.js";
import { ServiceTokens, unitClient } from "../../kit/src/unit-client.js";
import { ZonedTime } from "../../kit/src/zoned-time.js";
import type { UsageStore } from "../../usage/src/redis/store.js";
import { policy as usagePolicy } from "../../usage/src/routes.js";
import { createServer as createUsageServer } from "../../usage/src/server.js";
import { BillingJob, type BillingJobSettings } from "../src/billing/job.js";
import { invoiceNotice } from "../src/billing/wiring.js";

/**
 * The billing job's world for a test file: a database of its own (created, migrated, dropped),
 * a Redis database of its own behind a real usage unit (in this process, on a port), a topic of
 * its own for the bill messages. Lines go straight into the domain tables with the history a test
 * describes.
 */
const zone = new ZonedTime("Asia/Seoul");
/** An instant in Seoul. */
export const kst = (y: number, m: number, d: number, h = 0, min = 0) => zone.instant(y, m, d, h * 60 + min);
export const LONG_AGO = kst(2025, 1, 1);
export const MiB = 1024n * 1024n;
export const GiB = 1024n * MiB;

export const BILLING_TEST_REDIS_URL = process.env.TEST_BILLING_REDIS_URL ?? "redis://127.0.0.1:6379/13";

export interface LineSpec {
  id: string;
  activated?: number;
  terminated?: number | null;
  /** [plan, from, to?] */
  plans?: [string, number, number?][];
  vas?: [string, number, number?][];
  discounts?: [string, number, number?][];
  pays?: { merchant: string; amount: number; at: number }[];
}

export class BillingHarness {
  pool!: pg.Pool;
  url!: string;
  topic!: string;
  store!: UsageStore;
  usage!: RpcServer;
  usageAt!: Listening;
  admin!: Admin;
  private kafka!: Kafka;
  private redis!: ReturnType<typeof createRedis>;
  private producer!: Awaited<ReturnType<typeof createProducer>>;
  private db!: string;
  private customerId!: string;
  private jobs: BillingJob[] = [];

  static async start(name: string): Promise<BillingHarness> {
    const h = new BillingHarness();
    await h.init(name);
    return h;
  }

  private async init(name: string) {
    this.db = `telco_test_billing_${name}`;
    const admin = new pg.Client({ connectionString: "postgres://postgres@127.0.0.1:5432/postgres" });
    await admin.connect();
    await admin.query(`drop database if exists ${this.db} with (force)`);
    await admin.query(`create database ${this.db}`);
    await admin.end();
    this.url = `postgres://postgres@127.0.0.1:5432/${this.db}`;
    await migrateAll(this.url, undefined, () => {});
    this.pool = new pg.Pool({ connectionString: this.url, max: 12 });
    const c = await this.pool.query<{ customer_id: string }>(
      `insert into domain.customers (name_sealed, name_masked, phone_sealed, phone_index, birth_date_sealed, key_id)
       values ('\\x00', '시*험', '\\x00', $1, '\\x00', 'test') returning customer_id`,
      [randomBytes(32)],
    );
    this.customerId = c.rows[0]?.customer_id as string;

    this.redis = createRedis(BILLING_TEST_REDIS_URL, testLogger("test"), "test");
    await redisReady(this.redis, BILLING_TEST_REDIS_URL);
    await this.redis.flushdb();
    // Months long past stay open here (tests bill 2026 months at any date); real units keep 45 days.
    this.store = usageStore(this.redis, { openMaxDays: 365 });
    this.usage = createUsageServer(
      { store: this.store },
      { logger: testLogger("usage"), drainDelayMs: 0, drainTimeoutMs: 2_000, auth: { verifier, policy: usagePolicy } },
    );
    this.usageAt = await this.usage.listen(0);

    this.kafka = new Kafka({ clientId: "billing-test", brokers: KAFKA_BROKERS, logLevel: logLevel.NOTHING });
    this.admin = this.kafka.admin();
    await this.admin.connect();
    this.topic = unique("billing-notifications");
    await this.admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic: this.topic, numPartitions: 3, replicationFactor: 1 }],
    });
    this.producer = await createProducer(
      createKafka({ brokers: KAFKA_BROKERS, clientId: "billing-test", logger: testLogger("batch") }),
      {
        maxInFlightRequests: 5,
      },
    );
  }

  /** Environment of a batch process (the CLI) on this harness. */
  env(extra: Record<string, string> = {}): Record<string, string> {
    return {
      ...AUTH_ENV,
      DATABASE_URL: this.url,
      USAGE_URL: this.usageAt.url,
      KAFKA_BROKERS: KAFKA_BROKERS.join(","),
      NOTIFICATION_TOPIC: this.topic,
      LOG_LEVEL: "warn",
      ...extra,
    };
  }

  /** A billing job of this process on the harness (stopped with the harness). */
  async job(o: Partial<BillingJobSettings> = {}): Promise<BillingJob> {
    const tokens = await ServiceTokens.create(AUTH_KEYS.signingKey, "batch");
    const usage = unitClient(UsageService, this.usageAt.url, tokens);
    const job = new BillingJob({
      pool: this.pool,
      logger: testLogger("batch"),
      timeZone: "Asia/Seoul",
      partitions: 3,
      chunkSize: 7,
      leaseMs: 3_000,
      heartbeatMs: 200,
      dueDay: 25,
      usageTotals: async function* (month) {
        for await (const p of usage.streamMonthTotals({ month, pageSize: 1000 })) yield p.totals;
      },
      lateUsage: async function* () {
        for await (const p of usage.streamLateUsage({})) yield p.usage;
      },
      closeUsageMonth: async (month) => {
        await usage.closeMonth({ month });
      },
      notice: invoiceNotice,
      publish: async (records) => {
        await this.producer.send({
          topic: this.topic,
          acks: -1,
          messages: records.map((r) => ({ key: r.key, value: Buffer.from(r.value), headers: r.headers })),
        });
      },
      ...o,
    });
    this.jobs.push(job);
    return job;
  }

  /** Lines with their history, straight into the domain tables. */
  async addLines(lines: LineSpec[]): Promise<void> {
    const c = await this.pool.connect();
    try {
      await c.query("begin");
      for (const l of lines) {
        const n = await c.query<{ number_id: string }>(
          `insert into domain.numbers (number_sealed, number_index, status, key_id) values ('\\x00', $1, 'assigned', 'test')
           returning number_id`,
          [createHash("sha256").update(l.id).update(randomBytes(8)).digest()],
        );
        const activated = l.activated ?? LONG_AGO;
        const terminated = l.terminated ?? null;
        await c.query(
          `insert into domain.subscriptions (subscription_id, customer_id, number_id, status, activated_at, terminated_at)
           values ($1, $2, $3, $4, $5, $6)`,
          [
            l.id,
            this.customerId,
            n.rows[0]?.number_id,
            terminated === null ? "active" : "terminated",
            new Date(activated),
            terminated === null ? null : new Date(terminated),
          ],
        );
        const hist = async (table: string, col: string, rows: [string, number, number?][]) => {
          for (const [id, from, to] of rows) {
            await c.query(
              `insert into domain.${table} (subscription_id, ${col}, valid) values ($1, $2, tstzrange($3, $4, '[)'))`,
              [l.id, id, new Date(from), to === undefined ? null : new Date(to)],
            );
          }
        };
        await hist("subscription_plan", "plan_id", l.plans ?? [["5G-STD-110G", activated, terminated ?? undefined]]);
        await hist("subscription_vas", "vas_id", l.vas ?? []);
        await hist("subscription_discount", "discount_id", l.discounts ?? []);
        for (const [k, p] of (l.pays ?? []).entries()) {
          const f = zone.fields(p.at);
          await c.query(
            `insert into domain.micro_payments (subscription_id, merchant, amount_krw, occurred_at, month, idempotency_key)
             values ($1, $2, $3, $4, $5, $6)`,
            [
              l.id,
              p.merchant,
              p.amount,
              new Date(p.at),
              `${f.year}-${String(f.month).padStart(2, "0")}`,
              `${l.id}:${k}`,
            ],
          );
        }
      }
      await c.query("commit");
    } catch (e) {
      await c.query("rollback");
      throw e;
    } finally {
      c.release();
    }
  }

  /** Usage events of a line in a month, counted by the usage unit's store (real Redis). */
  async use(sid: string, month: string, bytes: number[], firstSeq = 1): Promise<void> {
    const m = this.store.clock.parse(month);
    await this.store.apply(bytes.map((b, i) => ({ sid, seq: firstSeq + i, bytes: b, month: m, traceparent: "" })));
  }

  /** The month's invoices and their lines as text: everything but the execution that wrote them. */
  async dump(month: string): Promise<string> {
    const r = await this.pool.query(
      `select i.invoice_number, i.invoice_id, i.subscription_id, i.month, i.subtotal_krw, i.vat_krw, i.total_krw,
              i.issued_at, i.due_date::text, i.used_bytes,
              (select string_agg(concat_ws('|', l.line_no, l.kind, l.description, l.amount_krw, l.ref_id), E'\\n' order by l.line_no)
                 from billing.invoice_lines l where l.invoice_id = i.invoice_id) lines
         from billing.invoices i where i.month = $1 order by i.invoice_number`,
      [month],
    );
    return r.rows
      .map((x) =>
        [
          x.invoice_number,
          x.invoice_id,
          x.subscription_id,
          x.month,
          x.subtotal_krw,
          x.vat_krw,
          x.total_krw,
          (x.issued_at as Date).toISOString(),
          x.due_date,
          x.used_bytes,
          `\n${x.lines}`,
        ].join(" "),
      )
      .join("\n");
  }

  /** Forgets a month's billing (invoices, runs, snapshot, close), to bill it again from nothing. */
  forget(month: string): Promise<void> {
    return forgetMonth(this.pool, month);
  }

  /** Every bill message on the harness's topic so far: request id → times seen. */
  async billMessages(expect: number, timeoutMs = 20_000): Promise<Map<string, number>> {
    const consumer: Consumer = this.kafka.consumer({ groupId: unique("billing-test-reader") });
    const seen = new Map<string, number>();
    let total = 0;
    await consumer.connect();
    await consumer.subscribe({ topic: this.topic, fromBeginning: true });
    const done = new Promise<void>((resolve) => {
      void consumer.run({
        eachMessage: async ({ message }) => {
          const r = fromBinary(NotificationRequestSchema, message.value as Buffer);
          seen.set(r.requestId, (seen.get(r.requestId) ?? 0) + 1);
          total++;
          if (seen.size >= expect) resolve();
        },
      });
    });
    await Promise.race([done, new Promise((r) => setTimeout(r, timeoutMs))]);
    // Records sent twice are still arriving right behind the last new one.
    await new Promise((r) => setTimeout(r, 500));
    await consumer.disconnect();
    void total;
    return seen;
  }

  async stop(): Promise<void> {
    for (const j of this.jobs) await Promise.allSettled([...j.inFlight().values()]);
    await this.producer.disconnect().catch(() => {});
    await this.admin.deleteTopics({ topics: [this.topic] }).catch(() => {});
    await this.admin.disconnect();
    await this.usage.drain();
    this.redis.disconnect();
    await this.pool.end();
    const admin = new pg.Client({ connectionString: "postgres://postgres@127.0.0.1:5432/postgres" });
    await admin.connect();
    await admin.query(`drop database if exists ${this.db} with (force)`);
    await admin.end();
  }
}
