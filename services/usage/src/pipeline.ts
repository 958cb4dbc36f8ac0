import type { Kafka, Producer } from "kafkajs";
import { DomainEventSchema } from "../../../gen/telco/domain/v1/events_pb.js";
import { UsageEventBatchSchema, UsageEventSchema } from "../../../gen/telco/usage/v1/events_pb.js";
import { ProtoConsumer } from "../../kit/src/kafka.js";
import type { Logger } from "../../kit/src/logger.js";
import type { RedisClient } from "../../kit/src/redis.js";
import { TOPICS } from "../../kit/src/topics.js";
import { Aggregator, readUsageValue, type UsageValue } from "./aggregator.js";
import { usageEvents } from "./metrics.js";
import { domainEventsHandler } from "./quotas.js";
import type { UsageStore } from "./redis/store.js";
import { OutboxRelay } from "./relay.js";

export interface PipelineOptions {
  kafka: Kafka;
  producer: Producer;
  redis: RedisClient;
  store: UsageStore;
  logger: Logger;
  components: { aggregator: boolean; relay: boolean; quotas: boolean };
  topics?: { usageEvents?: string; domainEvents?: string; notifications?: string };
  /** Consumer groups are "<prefix>-aggregator" and "<prefix>-quotas". */
  groupPrefix?: string;
  maxClockSkewMs?: number;
  relaySweepMs?: number;
  concurrency?: number;
  /** Batches of one partition in work at once (ProtoConsumer's pipeline). */
  batchesInFlight?: number;
  sessionTimeoutMs?: number;
  /** Where a new quota group starts on domain.events: the beginning (default) or its end. */
  quotasFromBeginning?: boolean;
  /** Log the running counts this often (0 = never). */
  statsIntervalMs?: number;
}

/**
 * The usage unit's asynchronous parts: the aggregator (usage.events → Redis), the outbox relay
 * (Redis → notification.requests) and the quota consumer (domain.events → Redis), as main.ts runs
 * them and as the tests run them on their own topics.
 */
export class UsagePipeline {
  readonly aggregator: Aggregator;
  relay: OutboxRelay | undefined;
  aggregatorConsumer: ProtoConsumer<typeof UsageEventSchema | typeof UsageEventBatchSchema, UsageValue> | undefined;
  quotaConsumer: ProtoConsumer<typeof DomainEventSchema> | undefined;
  /** Highest committed offset + 1 per partition of the usage topic (tests wait on it). */
  readonly committed = new Map<number, bigint>();
  private statsTimer: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private readonly statsIntervalMs: number;

  constructor(o: PipelineOptions) {
    this.log = o.logger.child({ component: "usage-pipeline" });
    this.statsIntervalMs = o.statsIntervalMs ?? 0;
    const onAlerts = (groups: number[]) => this.relay?.kick(groups);
    this.aggregator = new Aggregator({
      store: o.store,
      logger: o.logger,
      maxClockSkewMs: o.maxClockSkewMs ?? 300_000,
      onAlerts,
    });
    const prefix = o.groupPrefix ?? "usage";
    if (o.components.relay) {
      this.relay = new OutboxRelay({
        redis: o.redis,
        layout: o.store.layout,
        producer: o.producer,
        logger: o.logger,
        sweepMs: o.relaySweepMs ?? 1_000,
        topic: o.topics?.notifications,
      });
    }
    if (o.components.aggregator) {
      this.aggregatorConsumer = new ProtoConsumer({
        kafka: o.kafka,
        groupId: `${prefix}-aggregator`,
        topic: o.topics?.usageEvents ?? TOPICS.usageEvents,
        schemas: [UsageEventSchema, UsageEventBatchSchema],
        decodeValue: readUsageValue,
        handle: this.aggregator.handle,
        producer: o.producer,
        logger: o.logger,
        fromBeginning: true,
        partitionsConsumedConcurrently: o.concurrency ?? 4,
        pipeline: o.batchesInFlight ?? 2,
        sessionTimeout: o.sessionTimeoutMs,
        fetch: { maxBytesPerPartition: 4 * 1024 * 1024, maxBytes: 32 * 1024 * 1024, maxWaitTimeInMs: 200 },
        onCommitted: ({ partition, offset, dead }) => {
          this.committed.set(partition, BigInt(offset));
          // Records the consumer could not decode and events the aggregator refused alike.
          if (dead > 0) usageEvents.inc({ result: "dead_lettered" }, dead);
        },
      });
    }
    if (o.components.quotas) {
      this.quotaConsumer = new ProtoConsumer({
        kafka: o.kafka,
        groupId: `${prefix}-quotas`,
        topic: o.topics?.domainEvents ?? TOPICS.domainEvents,
        schemas: [DomainEventSchema],
        handle: domainEventsHandler(o.store, onAlerts),
        sessionTimeout: o.sessionTimeoutMs,
        producer: o.producer,
        logger: o.logger,
        fromBeginning: o.quotasFromBeginning ?? true,
      });
    }
  }

  /** Alerts found by quota loads go out at once too. */
  onAlerts = (groups: number[]) => this.relay?.kick(groups);

  /** The running counts, as logged. */
  stats(): Record<string, number> {
    return {
      ...(this.aggregatorConsumer ? this.aggregator.stats : {}),
      ...(this.relay ? { published: this.relay.stats.published, publish_failures: this.relay.stats.failures } : {}),
    };
  }

  async start(): Promise<void> {
    if (this.statsIntervalMs > 0) {
      this.statsTimer = setInterval(() => this.log.info(this.stats(), "usage pipeline counts"), this.statsIntervalMs);
    }
    this.relay?.start();
    await this.quotaConsumer?.start();
    await this.aggregatorConsumer?.start();
  }

  /** Consumers first (each finishes and commits its batch), then the relay publishes what is left. */
  async stop(): Promise<void> {
    await Promise.all([this.aggregatorConsumer?.stop(), this.quotaConsumer?.stop()]);
    if (this.relay) {
      await this.relay.sweep();
      await this.relay.stop();
    }
    if (this.statsTimer) {
      clearInterval(this.statsTimer);
      this.log.info(this.stats(), "usage pipeline counts");
    }
  }
}
