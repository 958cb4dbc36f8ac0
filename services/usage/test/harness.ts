import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Admin, Consumer, Kafka, KafkaMessage, Message, Producer } from "kafkajs";
import { DomainEventSchema } from "../../../gen/telco/domain/v1/events_pb.js";
import { NotificationRequestSchema } from "../../../gen/telco/message/v1/events_pb.js";
import { UsageEventBatchSchema, UsageEventSchema } from "../../../gen/telco/usage/v1/events_pb.js";
import { LocalRedis } from "../../../scripts/lib/local-redis.js";
import { eventually, KAFKA_BROKERS, TEST_REDIS_URL, testLogger, unique } from "../../../test/support/env.js";
import { usageStore } from "../../../test/support/usage.js";
import { createKafka, createProducer, dlqTopic, encodeRecord } from "../../kit/src/kafka.js";
import { clientReady, createRedisClient, type RedisClient } from "../../kit/src/redis.js";
import { UsagePipeline } from "../src/pipeline.js";
import type { UsageStore } from "../src/redis/store.js";

export type RedisKind = "standalone" | "cluster";

/** One event to send: a line's event with its sequence number, bytes and occurrence time. */
export interface Ev {
  line: string;
  seq: number;
  bytes: number;
  atMs: number;
}

export interface Received {
  requestId: string;
  key: string;
  traceparent: string | undefined;
}

/**
 * The usage pipeline (aggregator + relay + quota consumer) in this process on its own topics and
 * consumer groups, on the real Kafka and a real Redis (single or Cluster), plus a consumer that
 * collects what reaches the notification topic.
 */
export class Harness {
  readonly logger = testLogger("usage-test");
  kafka!: Kafka;
  admin!: Admin;
  producer!: Producer;
  redis!: RedisClient;
  store!: UsageStore;
  pipeline: UsagePipeline | undefined;
  collector!: Consumer;
  readonly received: Received[] = [];
  readonly topics = {
    usage: unique("t.usage.events"),
    domain: unique("t.domain.events"),
    notifications: unique("t.notification.requests"),
  };
  readonly partitions = 4;
  /** The 3-master cluster a "cluster" harness starts for itself. */
  cluster: LocalRedis | undefined;

  constructor(readonly kind: RedisKind) {}

  /** `pipeline: false`: only topics, Redis and the collector (the pipeline runs elsewhere). */
  async start({ pipeline = true }: { pipeline?: boolean } = {}): Promise<void> {
    this.kafka = createKafka({ brokers: KAFKA_BROKERS, clientId: "usage-test", logger: this.logger });
    this.admin = this.kafka.admin();
    await this.admin.connect();
    const t = (topic: string, n: number) => ({ topic, numPartitions: n, replicationFactor: 1 });
    await this.admin.createTopics({
      waitForLeaders: true,
      topics: [
        t(this.topics.usage, this.partitions),
        t(dlqTopic(this.topics.usage), this.partitions),
        t(this.topics.domain, 2),
        t(dlqTopic(this.topics.domain), 2),
        t(this.topics.notifications, 2),
      ],
    });
    this.producer = await createProducer(this.kafka);
    if (this.kind === "cluster") {
      this.cluster = new LocalRedis();
      await this.cluster.start(3);
      this.redis = createRedisClient(TEST_REDIS_URL, this.cluster.nodes, this.logger, "usage-test");
    } else {
      this.redis = createRedisClient(TEST_REDIS_URL, [], this.logger, "usage-test");
    }
    await clientReady(this.redis, this.kind === "cluster" ? "test redis cluster" : "test redis");
    this.store = usageStore(this.redis, { graceDays: 40 });
    if (pipeline) await this.startPipeline();
    this.collector = this.kafka.consumer({ groupId: unique("collector") });
    await this.collector.connect();
    await this.collector.subscribe({ topic: this.topics.notifications, fromBeginning: true });
    await this.collector.run({
      eachMessage: async ({ message }) => {
        if (!message.value) return;
        const r = fromBinary(NotificationRequestSchema, message.value);
        this.received.push({
          requestId: r.requestId,
          key: message.key?.toString() ?? "",
          traceparent: message.headers?.traceparent?.toString(),
        });
      },
    });
  }

  groupPrefix = unique("usage-test");

  async startPipeline(): Promise<void> {
    this.pipeline = new UsagePipeline({
      kafka: this.kafka,
      producer: this.producer,
      redis: this.redis,
      store: this.store,
      logger: this.logger,
      components: { aggregator: true, relay: true, quotas: true },
      topics: {
        usageEvents: this.topics.usage,
        domainEvents: this.topics.domain,
        notifications: this.topics.notifications,
      },
      groupPrefix: this.groupPrefix,
      relaySweepMs: 200,
      concurrency: 2,
    });
    await this.pipeline.start();
  }

  /** Records of the usage topic's dead-letter topic, as they arrive (see readDeadLetters). */
  readonly dead: KafkaMessage[] = [];
  private deadReader: Consumer | undefined;

  /** Starts collecting the usage topic's dead letters into `dead`. */
  async readDeadLetters(): Promise<void> {
    const c = this.kafka.consumer({ groupId: unique("dlq-reader") });
    this.deadReader = c;
    await c.connect();
    await c.subscribe({ topic: dlqTopic(this.topics.usage), fromBeginning: true });
    await c.run({
      eachMessage: async ({ message }) => {
        this.dead.push(message);
      },
    });
  }

  async stop(): Promise<void> {
    await this.deadReader?.disconnect();
    await this.pipeline?.stop();
    await this.collector?.disconnect();
    await this.producer?.disconnect();
    await this.admin
      ?.deleteTopics({
        topics: [
          this.topics.usage,
          dlqTopic(this.topics.usage),
          this.topics.domain,
          dlqTopic(this.topics.domain),
          this.topics.notifications,
        ],
      })
      .catch(() => {});
    await this.admin?.disconnect();
    this.redis?.disconnect();
    await this.cluster?.stop();
  }

  /** The partition every record of a line goes to (single and batch records alike). */
  partitionOf(line: string): number {
    let h = 0;
    for (let i = 0; i < line.length; i++) h = (h * 31 + line.charCodeAt(i)) >>> 0;
    return h % this.partitions;
  }

  event(e: Ev) {
    return create(UsageEventSchema, {
      eventId: `${e.line}:${e.seq}`,
      subscriptionId: e.line,
      seq: BigInt(e.seq),
      bytes: BigInt(e.bytes),
      occurredAt: timestampFromMs(e.atMs),
      source: "pgw-test-01",
    });
  }

  /**
   * Sends events in order: each entry is one record, a single event or a batch of events of lines
   * on one partition. One send call, so records keep their order per partition.
   */
  async send(records: Ev[][], traceparent?: string): Promise<void> {
    const messages: (Message & { partition: number })[] = records.map((evs) => {
      const first = evs[0] as Ev;
      const headers = traceparent ? { traceparent } : undefined;
      const partition = this.partitionOf(first.line);
      if (evs.length === 1)
        return { ...encodeRecord(UsageEventSchema, this.event(first), { key: first.line, headers }), partition };
      const batch = create(UsageEventBatchSchema, { events: evs.map((e) => this.event(e)) });
      return { ...encodeRecord(UsageEventBatchSchema, batch, { key: first.line, headers, typed: true }), partition };
    });
    for (let i = 0; i < messages.length; i += 500) {
      await this.producer.send({ topic: this.topics.usage, acks: -1, messages: messages.slice(i, i + 500) });
    }
  }

  /** Sends a domain event (quota changes) for a line. */
  async domainEvent(line: string, lineSequence: number, event: MessageInitShape<typeof DomainEventSchema>["event"]) {
    const e = create(DomainEventSchema, {
      eventId: `${line}:${lineSequence}`,
      subscriptionId: line,
      lineSequence: BigInt(lineSequence),
      occurredAt: timestampFromMs(Date.now()),
      event,
    });
    await this.producer.send({
      topic: this.topics.domain,
      acks: -1,
      messages: [encodeRecord(DomainEventSchema, e, { key: line })],
    });
  }

  /**
   * Waits until the aggregator and the quota consumer have committed everything on their topics,
   * the outboxes are empty and every published notification has reached the collector.
   */
  async idle(timeoutMs = 60_000): Promise<void> {
    const caughtUp = async (topic: string, groupId: string) => {
      const ends = await this.admin.fetchTopicOffsets(topic);
      const [mine] = await this.admin.fetchOffsets({ groupId, topics: [topic] });
      return ends.every((e) => {
        const c = mine?.partitions.find((p) => p.partition === e.partition)?.offset ?? "-1";
        return BigInt(e.high) === 0n || BigInt(c) >= BigInt(e.high);
      });
    };
    await eventually(
      async () =>
        (await caughtUp(this.topics.usage, `${this.groupPrefix}-aggregator`)) &&
        (await caughtUp(this.topics.domain, `${this.groupPrefix}-quotas`))
          ? true
          : undefined,
      timeoutMs,
      "the consumers to catch up",
    );
    await this.pipeline?.relay?.sweep();
    await eventually(
      async () => {
        const sizes = await Promise.all(this.store.outboxKeys().map((k) => this.redis.hlen(k)));
        return sizes.every((s) => s === 0) ? true : undefined;
      },
      timeoutMs,
      "the outboxes to empty",
    );
    await eventually(
      async () => {
        const ends = await this.admin.fetchTopicOffsets(this.topics.notifications);
        const total = ends.reduce((n, e) => n + Number(e.high), 0);
        return this.received.length >= total ? true : undefined;
      },
      timeoutMs,
      "the collector to read every notification",
    );
  }

  /** Rewinds the aggregator's group on these partitions: Kafka delivers those records again. */
  async redeliver(partitions: number | number[], offset: string): Promise<void> {
    await this.pipeline?.stop();
    await this.admin.setOffsets({
      groupId: `${this.groupPrefix}-aggregator`,
      topic: this.topics.usage,
      partitions: [...new Set([partitions].flat())].map((partition) => ({ partition, offset })),
    });
    await this.startPipeline();
  }
}
