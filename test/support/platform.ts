import { randomInt, randomUUID } from "node:crypto";
import type { Admin } from "kafkajs";
import pg from "pg";
import { CustomerService } from "../../gen/telco/domain/v1/customer_pb.js";
import { SubscriptionService } from "../../gen/telco/domain/v1/subscription_pb.js";
import { Channel } from "../../gen/telco/message/v1/events_pb.js";
import { TemplateService, VariableType } from "../../gen/telco/message/v1/template_pb.js";
import { migrateAll } from "../../scripts/migrate.js";
import { addNumbers } from "../../services/domain/src/store/number-pool.js";
import { createKafka, dlqTopic } from "../../services/kit/src/kafka.js";
import { createKnex } from "../../services/kit/src/postgres.js";
import { TestSmsc, TestSmtp } from "../../services/message/test/peers.js";
import { AUTH_ENV, tokenFor } from "./auth.js";
import { grpcClient } from "./clients.js";
import { KAFKA_BROKERS, testLogger, unique } from "./env.js";
import { personal, personalPhone } from "./personal.js";
import { freePort, spawnUnit, type UnitProcess, waitForLog } from "./processes.js";
import { testPii } from "./units.js";

export type Unit = "domain" | "usage" | "message" | "batch";
export const UNITS: Unit[] = ["domain", "usage", "message", "batch"];

/**
 * The four units as their own processes (services/<unit>/src/main.ts, as `npm start` runs them),
 * every component on: a database of their own, topics of their own (the domain unit's welcome
 * messages excepted: they go to the fixed notification.requests), a Redis database of their own, a real SMSC, and the settings the test
 * adds (e.g. an OTLP endpoint). Each unit's RPC and metrics ports are free ones, known here.
 */
export class Platform {
  readonly db = `telco_test_platform_${randomUUID().slice(0, 8)}`;
  readonly url = `postgres://postgres@127.0.0.1:5432/${this.db}`;
  readonly topics = {
    usage: unique("p.usage.events"),
    notifications: unique("p.notification.requests"),
    results: unique("p.message.results"),
    domain: unique("p.domain.events"),
  };
  /**
   * Consumer groups, named once: a unit restarted (or a second instance) joins the same group and
   * resumes from its committed offsets, as in production.
   */
  readonly groups = { usage: unique("p-usage"), message: unique("p-message") };
  readonly smsc = new TestSmsc();
  /** A real SMTP server for the e-mail channel (bills). */
  readonly smtp = new TestSmtp();
  readonly procs = new Map<Unit, UnitProcess>();
  readonly ports = new Map<Unit, { rpc: number; metrics: number }>();
  private admin: Admin | undefined;

  constructor(
    private readonly o: {
      redisUrl: string;
      env?: Record<string, string>;
      /** Numbers in the pool (one per line activated, 20 unless more are needed). */
      numbers?: number;
      /** Settings of one unit only, over `env`. */
      unitEnv?: Partial<Record<Unit, Record<string, string>>>;
    },
  ) {}

  async start(): Promise<void> {
    const admin = new pg.Client({ connectionString: "postgres://postgres@127.0.0.1:5432/postgres" });
    await admin.connect();
    await admin.query(`create database ${this.db}`);
    await admin.end();
    await migrateAll(this.url, undefined, () => {});
    const knex = createKnex({ url: this.url, schema: "domain", poolMax: 2 });
    try {
      // Below 010-5000-0000: the seed's numbers (scripts/seed.ts numberOfLine) are above it.
      const from = `010${String(randomInt(0, 49_000_000)).padStart(8, "0")}`;
      const count = this.o.numbers ?? 20;
      await addNumbers(knex, testPii, { from, count, batchSize: Math.min(count, 1000) });
    } finally {
      await knex.destroy();
    }
    const kafka = createKafka({ brokers: KAFKA_BROKERS, clientId: "platform-test", logger: testLogger("test") });
    this.admin = kafka.admin();
    await this.admin.connect();
    const t = (topic: string, n: number) => ({ topic, numPartitions: n, replicationFactor: 1 });
    await this.admin.createTopics({
      waitForLeaders: true,
      topics: this.allTopics().map((topic) => t(topic, 3)),
    });
    await this.smsc.start();
    await this.smtp.start();
    for (const u of UNITS) this.ports.set(u, { rpc: await freePort(), metrics: await freePort() });
    // The domain unit first: the usage unit loads quotas from it, the others call it.
    for (const u of UNITS) {
      const p = spawnUnit(u, this.env(u));
      this.procs.set(u, p);
      await waitForLog(p, /unit listening/, 60_000);
    }
  }

  /** SIGKILLs the unit's process (no drain, no goodbye) and waits until it is gone. */
  async kill(u: Unit): Promise<void> {
    const p = this.procs.get(u);
    if (!p) throw new Error(`no ${u} process`);
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
    await p.exited;
  }

  /** Starts the unit again, on its ports and settings, and waits until it listens. */
  async restart(u: Unit): Promise<void> {
    const p = spawnUnit(u, this.env(u));
    this.procs.set(u, p);
    await waitForLog(p, /unit listening/, 60_000);
  }

  /** A unit's settings as the platform starts it (for a second instance of the same unit, say). */
  envOf(u: Unit): Record<string, string> {
    return this.env(u);
  }

  /** The platform's own topics and their dead-letter topics. */
  private allTopics(): string[] {
    const { usage, notifications, results, domain } = this.topics;
    return [usage, dlqTopic(usage), notifications, dlqTopic(notifications), results, domain, dlqTopic(domain)];
  }

  urlOf(u: Unit): string {
    return `http://127.0.0.1:${this.ports.get(u)?.rpc}`;
  }

  metricsUrl(u: Unit): string {
    return `http://127.0.0.1:${this.ports.get(u)?.metrics}/metrics`;
  }

  private env(u: Unit): Record<string, string> {
    const port = this.ports.get(u) as { rpc: number; metrics: number };
    return {
      ...AUTH_ENV,
      [`${u.toUpperCase()}_PORT`]: String(port.rpc),
      METRICS_PORT: String(port.metrics),
      DATABASE_URL: this.url,
      REDIS_URL: this.o.redisUrl,
      KAFKA_BROKERS: KAFKA_BROKERS.join(","),
      LOG_LEVEL: "info",
      DRAIN_DELAY_MS: "0",
      DOMAIN_URL: this.urlOf("domain"),
      USAGE_URL: this.urlOf("usage"),
      DOMAIN_OUTBOX_POLL_MS: "100",
      USAGE_COMPONENTS: "aggregator,relay,quotas",
      USAGE_EVENTS_TOPIC: this.topics.usage,
      DOMAIN_EVENTS_TOPIC: this.topics.domain,
      NOTIFICATION_TOPIC: this.topics.notifications,
      USAGE_GROUP_PREFIX: this.groups.usage,
      USAGE_RELAY_SWEEP_MS: "200",
      MESSAGE_GROUP: this.groups.message,
      MESSAGE_RESULTS_TOPIC: this.topics.results,
      MESSAGE_SMPP_URL: this.smsc.url,
      MESSAGE_SMTP_URL: this.smtp.url,
      MESSAGE_QUIET_HOURS: "",
      MESSAGE_DISPATCH_POLL_MS: "100",
      ...this.o.env,
      ...this.o.unitEnv?.[u],
    };
  }

  /** A customer (personal values registered for the log scan) with an active line on `planId`. */
  async line(planId = "5G-SLIM-8G"): Promise<{ subscriptionId: string; msisdn: string; personal: string[] }> {
    const operator = await tokenFor("operator");
    const customers = grpcClient(CustomerService, this.urlOf("domain"), operator);
    const lines = grpcClient(SubscriptionService, this.urlOf("domain"), operator);
    const tag = randomUUID().slice(0, 8);
    const digits = String(randomInt(10_000_000, 99_999_999));
    const fields = {
      name: personal(`관측${tag}`),
      email: personal(`obs.${tag}@example.kr`),
      phoneNumber: personalPhone(`010-${digits.slice(0, 4)}-${digits.slice(4)}`),
    };
    const c = await customers.createCustomer({ requestId: randomUUID(), ...fields, birthDate: "1979-02-03" });
    const a = await lines.activateLine({
      requestId: randomUUID(),
      customerId: c.customer?.customerId as string,
      planId,
    });
    const subscriptionId = a.line?.subscriptionId as string;
    const service = grpcClient(SubscriptionService, this.urlOf("domain"), await tokenFor("service"));
    const contact = await service.getLineContact({ subscriptionId });
    // The line's own number (the customer's contact phone is their first line's).
    personalPhone(contact.phoneNumber);
    const msisdn = `82${contact.phoneNumber.replace(/\D/g, "").slice(1)}`;
    const number = contact.phoneNumber.replace(/\D/g, "");
    return {
      subscriptionId,
      msisdn,
      personal: [fields.name, fields.email, fields.phoneNumber, digits, number, contact.phoneNumber, msisdn],
    };
  }

  /** Publishes the SMS templates of the three usage alerts (ko-KR). */
  async alertTemplates(): Promise<void> {
    const t = grpcClient(TemplateService, this.urlOf("message"), await tokenFor("admin"));
    for (const level of [50, 80, 100]) {
      const created = await t.createTemplate({
        name: `usage-threshold-${level}`,
        channel: Channel.SMS,
        locale: "ko-KR",
        subject: "",
        body: `{{month}} 데이터를 ${level}% 사용했습니다.`,
        variables: [{ name: "month", type: VariableType.STRING, required: true, example: "2026-12" }],
      });
      await t.publishTemplate({ templateId: created.template?.templateId as string, version: 1 });
    }
  }

  async stop(): Promise<void> {
    await Promise.all(
      [...this.procs.values()].map(async (p) => {
        if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGTERM");
        // A unit that does not drain within 30 s is killed.
        const timer = setTimeout(() => p.child.kill("SIGKILL"), 30_000);
        await p.exited;
        clearTimeout(timer);
      }),
    );
    await this.smsc.stop();
    await this.smtp.stop();
    await this.admin?.deleteTopics({ topics: this.allTopics() }).catch(() => {});
    await this.admin?.disconnect();
    const admin = new pg.Client({ connectionString: "postgres://postgres@127.0.0.1:5432/postgres" });
    await admin.connect();
    await admin.query(`drop database if exists ${this.db} with (force)`);
    await admin.end();
  }
}
