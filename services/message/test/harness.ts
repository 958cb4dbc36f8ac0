import { randomInt, randomUUID } from "node:crypto";
import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import type { Admin, Consumer, Kafka, KafkaMessage, Producer } from "kafkajs";
import { CustomerService } from "../../../gen/telco/domain/v1/customer_pb.js";
import { SubscriptionService } from "../../../gen/telco/domain/v1/subscription_pb.js";
import {
  Channel,
  type DeliveryResult,
  DeliveryResultSchema,
  NotificationKind,
  NotificationRequestSchema,
} from "../../../gen/telco/message/v1/events_pb.js";
import { TemplateService, type TemplateVariable, VariableType } from "../../../gen/telco/message/v1/template_pb.js";
import { tokenFor } from "../../../test/support/auth.js";
import { grpcClient } from "../../../test/support/clients.js";
import { KAFKA_BROKERS, TEST_REDIS_URL, testLogger, unique } from "../../../test/support/env.js";
import { personal, personalPhone } from "../../../test/support/personal.js";
import { type RunningUnits, startUnits } from "../../../test/support/units.js";
import { ownPool } from "../../domain/test/pool-fixture.js";
import { createKafka, createProducer, dlqTopic, encodeRecord } from "../../kit/src/kafka.js";
import { OutboxRelay } from "../../kit/src/outbox-relay.js";
import { clientReady, createRedisClient, type RedisClient } from "../../kit/src/redis.js";
import { Dispatcher, type DispatcherOptions } from "../src/delivery/dispatcher.js";
import { Intake } from "../src/delivery/intake.js";
import { Limits } from "../src/delivery/limits.js";
import { type Clock, parseQuietHours, ZonedTime } from "../src/delivery/quiet-hours.js";
import { type Provider, providerModules, type Receipt } from "../src/providers/provider.js";
import { MessageStore, OUTBOX_TABLE } from "../src/store/message-store.js";
import { type ChannelName, TemplateStore } from "../src/store/template-store.js";
import { TestPush, TestSmsc, TestSmtp } from "./peers.js";

/** A clock that runs with real time from a chosen instant. */
export class TestClock implements Clock {
  private offset = 0;
  now(): number {
    return Date.now() + this.offset;
  }
  set(ms: number): void {
    this.offset = ms - Date.now();
  }
  reset(): void {
    this.offset = 0;
  }
}

/** "2026-12-01T23:00" in Asia/Seoul → the instant. */
export const kst = (wall: string) => Date.parse(`${wall}:00+09:00`);

export interface Line {
  subscriptionId: string;
  /** International digits as the SMSC sees them, e.g. 8210…. */
  msisdn: string;
  email: string;
}

/**
 * The message unit's delivery in this process (intake, dispatcher, outbox relay) on its own
 * topics, against the real domain unit (recipients), PostgreSQL, Redis, Kafka, and real protocol
 * peers: an SMPP server, an SMTP server and an FCM-style HTTP endpoint.
 */
export class Harness {
  readonly logger = testLogger("message-test");
  readonly clock = new TestClock();
  readonly zone = new ZonedTime("Asia/Seoul");
  readonly smsc = new TestSmsc();
  readonly smtp = new TestSmtp();
  readonly push = new TestPush();
  readonly topics = {
    requests: unique("t.notification.requests"),
    results: unique("t.message.results"),
  };
  /** Distinct template names per harness, so runs and files never share templates. */
  readonly tag = randomUUID().slice(0, 6);
  units!: RunningUnits;
  kafka!: Kafka;
  admin!: Admin;
  producer!: Producer;
  redis!: RedisClient;
  store!: MessageStore;
  templates!: TemplateStore;
  intake: Intake | undefined;
  dispatcher: Dispatcher | undefined;
  relay: OutboxRelay | undefined;
  providers = new Map<ChannelName, Provider>();
  readonly results: DeliveryResult[] = [];
  readonly dead: KafkaMessage[] = [];
  private readers: Consumer[] = [];

  /** `poolMax`: database connections per unit; `numbers`: free numbers for the lines it makes. */
  constructor(private readonly opts: { poolMax?: number; numbers?: number } = {}) {}

  async start(settings: Partial<DispatcherOptions> = {}, env: Record<string, string> = {}): Promise<void> {
    await Promise.all([this.smsc.start(), this.smtp.start(), this.push.start()]);
    this.units = await startUnits({ clock: this.clock, poolMax: this.opts.poolMax });
    await ownPool(this.units.knex.domain, this.opts.numbers ?? 50);
    this.kafka = createKafka({ brokers: KAFKA_BROKERS, clientId: "message-test", logger: this.logger });
    this.admin = this.kafka.admin();
    await this.admin.connect();
    const t = (topic: string, n: number) => ({ topic, numPartitions: n, replicationFactor: 1 });
    await this.admin.createTopics({
      waitForLeaders: true,
      topics: [t(this.topics.requests, 3), t(dlqTopic(this.topics.requests), 3), t(this.topics.results, 3)],
    });
    this.producer = await createProducer(this.kafka);
    this.redis = createRedisClient(TEST_REDIS_URL, [], this.logger, "message-test");
    await clientReady(this.redis, "test redis");
    // Rate-limit state of earlier runs must not hold this one back.
    const stale = await (this.redis as import("ioredis").Redis).keys("message:{rate:*");
    if (stale.length > 0) await (this.redis as import("ioredis").Redis).del(...stale);
    this.store = new MessageStore(this.units.knex.message, {
      results: this.topics.results,
      requests: this.topics.requests,
    });
    this.templates = new TemplateStore(this.units.knex.message);
    await this.collect(this.topics.results, (m) => {
      if (m.value) this.results.push(fromBinary(DeliveryResultSchema, m.value));
    });
    await this.collect(dlqTopic(this.topics.requests), (m) => {
      this.dead.push(m);
    });
    this.relay = new OutboxRelay({
      knex: this.units.knex.message,
      table: OUTBOX_TABLE,
      producer: this.producer,
      logger: this.logger,
      pollIntervalMs: 50,
    });
    this.relay.start();
    this.intake = new Intake({
      kafka: this.kafka,
      producer: this.producer,
      store: this.store,
      topic: this.topics.requests,
      groupId: unique("message-intake"),
      logger: this.logger,
      clock: this.clock,
      zone: this.zone,
      quiet: parseQuietHours("21:00-08:00"),
      defaultLocale: "ko-KR",
      onAccepted: () => this.dispatcher?.wake(),
    });
    await this.intake.start();
    await this.startDispatcher(settings, env);
  }

  async startDispatcher(settings: Partial<DispatcherOptions> = {}, env: Record<string, string> = {}): Promise<void> {
    const modules = await providerModules();
    const onReceipt = (r: Receipt) => this.store.applyReceipt(r.providerId, r.stat, new Date(this.clock.now()));
    const providerEnv = {
      MESSAGE_SMPP_URL: this.smsc.url,
      MESSAGE_SMTP_URL: this.smtp.url,
      MESSAGE_PUSH_URL: this.push.url,
      MESSAGE_SMPP_RECONNECT_MAX_MS: "500",
      MESSAGE_SMPP_RESPONSE_TIMEOUT_MS: "3000",
      ...env,
    };
    this.providers = new Map();
    for (const [channel, name] of [
      ["sms", "smpp"],
      ["email", "smtp"],
      ["push", "fcm"],
    ] as const) {
      const p = (modules.get(name) as NonNullable<ReturnType<typeof modules.get>>).create({
        env: providerEnv,
        logger: this.logger,
        onReceipt,
      });
      await p.start();
      this.providers.set(channel, p);
    }
    this.dispatcher = new Dispatcher({
      store: this.store,
      templates: this.templates,
      limits: new Limits(this.redis),
      providers: this.providers,
      domain: grpcClient(SubscriptionService, this.units.at.domain.url, await tokenFor("service", [], "message")),
      clock: this.clock,
      zone: this.zone,
      quiet: parseQuietHours("21:00-08:00"),
      rates: { sms: { perSecond: 0, burst: 1 }, email: { perSecond: 0, burst: 1 }, push: { perSecond: 0, burst: 1 } },
      dailyCap: 0,
      maxAttempts: 3,
      retryBaseMs: 100,
      retryMaxMs: 400,
      smsMaxSegments: 10,
      concurrency: 16,
      pollMs: 50,
      leaseMs: 30_000,
      logger: this.logger,
      ...settings,
    });
    this.dispatcher.start();
  }

  async stopDispatcher(): Promise<void> {
    await this.dispatcher?.stop();
    this.dispatcher = undefined;
    for (const p of this.providers.values()) await p.stop();
    this.providers.clear();
  }

  private async collect(topic: string, each: (m: KafkaMessage) => void): Promise<void> {
    const c = this.kafka.consumer({ groupId: unique("collector") });
    this.readers.push(c);
    await c.connect();
    await c.subscribe({ topic, fromBeginning: true });
    await c.run({ eachMessage: async ({ message }) => each(message) });
  }

  async stop(): Promise<void> {
    await this.stopDispatcher();
    await this.intake?.stop();
    await this.relay?.stop();
    for (const r of this.readers) await r.disconnect();
    await this.producer?.disconnect();
    await this.admin
      ?.deleteTopics({ topics: [this.topics.requests, dlqTopic(this.topics.requests), this.topics.results] })
      .catch(() => {});
    await this.admin?.disconnect();
    this.redis?.disconnect();
    await this.units?.stop();
    await Promise.all([this.smsc.stop(), this.smtp.stop(), this.push.stop()]);
  }

  /** A customer with an e-mail and an active line, through the domain unit's RPCs. */
  async line(): Promise<Line> {
    const tag = randomUUID().slice(0, 8);
    const email = personal(`m.${tag}@example.kr`);
    const customers = grpcClient(CustomerService, this.units.at.domain.url, await tokenFor("operator"));
    const lines = grpcClient(SubscriptionService, this.units.at.domain.url, await tokenFor("operator"));
    const service = grpcClient(SubscriptionService, this.units.at.domain.url, await tokenFor("service"));
    const digits = String(randomInt(10_000_000, 99_999_999));
    personalPhone(`010${digits}`);
    const c = await customers.createCustomer({
      requestId: randomUUID(),
      name: personal(`고객${tag}`),
      email,
      phoneNumber: `010-${digits.slice(0, 4)}-${digits.slice(4)}`,
      birthDate: "1988-08-08",
    });
    const a = await lines.activateLine({
      requestId: randomUUID(),
      customerId: c.customer?.customerId as string,
      planId: "5G-STD-110G",
    });
    const subscriptionId = a.line?.subscriptionId as string;
    const contact = await service.getLineContact({ subscriptionId });
    personalPhone(contact.phoneNumber);
    return { subscriptionId, msisdn: `82${contact.phoneNumber.replace(/\D/g, "").slice(1)}`, email };
  }

  /** Creates and publishes a template; answers its id and version. */
  async template(
    name: string,
    channel: Channel,
    body: string,
    opts: { subject?: string; variables?: Partial<TemplateVariable>[] } = {},
  ): Promise<{ id: string; version: number }> {
    const t = grpcClient(TemplateService, this.units.at.message.url, await tokenFor("admin"));
    const variables = (opts.variables ?? []).map((v) => ({
      name: v.name ?? "",
      type: v.type ?? VariableType.STRING,
      required: v.required ?? true,
      example: v.example ?? "x",
    }));
    const created = await t.createTemplate({
      name,
      channel,
      locale: "ko-KR",
      subject: opts.subject ?? "",
      body,
      variables,
    });
    const id = created.template?.templateId as string;
    await t.publishTemplate({ templateId: id, version: 1 });
    return { id, version: 1 };
  }

  /** Publishes notification requests (one send: their order per line holds). */
  async request(...reqs: MessageInitShape<typeof NotificationRequestSchema>[]): Promise<void> {
    await this.producer.send({
      topic: this.topics.requests,
      acks: -1,
      messages: reqs.map((r) => {
        const value = create(NotificationRequestSchema, { requestedAt: timestampNow(), ...r });
        return encodeRecord(NotificationRequestSchema, value, { key: value.subscriptionId });
      }),
    });
  }

  /** A usage threshold request of a line. */
  threshold(line: Line, level: 50 | 80 | 100, month = "2026-12"): MessageInitShape<typeof NotificationRequestSchema> {
    return {
      requestId: `usage-threshold:${line.subscriptionId}:${month}:${level}`,
      subscriptionId: line.subscriptionId,
      kind: NotificationKind.USAGE_THRESHOLD,
      urgent: level === 100,
      detail: {
        case: "usageThreshold",
        value: { month, level, usedBytes: 55_000_000_000n, quotaBytes: 110_000_000_000n },
      },
    };
  }

  submitsTo(line: Line) {
    return this.smsc.submitted.filter((s) => s.destination === line.msisdn);
  }
}

/** The names the threshold templates have: the intake picks them by level. */
export const THRESHOLD_VARS: Partial<TemplateVariable>[] = [
  { name: "user_name", type: VariableType.STRING, required: true },
  { name: "level", type: VariableType.NUMBER, required: true },
  { name: "month", type: VariableType.STRING, required: true },
];
export { Channel };
