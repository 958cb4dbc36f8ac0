import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import {
  type Consumer,
  type EachBatchPayload,
  type IHeaders,
  Kafka,
  type KafkaMessage,
  logLevel,
  type Message,
  Partitioners,
  type Producer,
} from "kafkajs";
import type { Logger } from "./logger.js";

/** Header naming the Protobuf message type of a record's value when it is not the topic's default. */
export const MESSAGE_TYPE_HEADER = "telco-message-type";
/** W3C trace context travels in these record headers. */
export const TRACE_HEADERS = ["traceparent", "tracestate"] as const;

/** Headers a dead-lettered record carries, besides the original key, value and headers. */
export const DLQ = {
  reason: "dlq-reason",
  sourceTopic: "dlq-source-topic",
  sourcePartition: "dlq-source-partition",
  sourceOffset: "dlq-source-offset",
  consumerGroup: "dlq-consumer-group",
  failedAt: "dlq-failed-at",
} as const;

export const dlqTopic = (topic: string) => `${topic}.dlq`;

export interface KafkaSettings {
  brokers: string[];
  clientId: string;
  logger: Logger;
}

/** A kafkajs client whose own log lines go through the unit's JSON logger. */
export function createKafka({ brokers, clientId, logger }: KafkaSettings): Kafka {
  const log = logger.child({ component: "kafkajs" });
  return new Kafka({
    clientId,
    brokers,
    connectionTimeout: 5_000,
    requestTimeout: 30_000,
    retry: { initialRetryTime: 200, retries: 10, maxRetryTime: 10_000 },
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }) => {
        const { message, ...extra } = entry;
        if (level <= logLevel.ERROR) log.error(extra, message);
        else if (level === logLevel.WARN) log.warn(extra, message);
        else log.debug(extra, message);
      },
  });
}

/**
 * A producer whose records keep their order per partition even when a send is retried: one
 * request in flight per broker (kafkajs's idempotent mode is experimental and retries forever).
 * A retried send may still write a record twice; every consumer here deduplicates by id.
 * acks=all: on the single local broker that protects nothing beyond its own log (see README).
 * `maxInFlightRequests` > 1 trades that order for throughput (load generators).
 */
export async function createProducer(kafka: Kafka, { maxInFlightRequests = 1 } = {}): Promise<Producer> {
  // The default partitioner (murmur2 of the key, as the Java client), named so kafkajs does not warn.
  const producer = kafka.producer({
    allowAutoTopicCreation: false,
    maxInFlightRequests,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  return producer;
}

export interface EncodeOptions {
  key: string;
  headers?: Record<string, string>;
  /** Marks the value's type in a header; needed only when it is not the topic's default type. */
  typed?: boolean;
}

/** A Kafka message whose value is the binary Protobuf encoding of `message`. */
export function encodeRecord<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
  { key, headers = {}, typed = false }: EncodeOptions,
): Message {
  return {
    key,
    value: Buffer.from(toBinary(schema, message)),
    headers: typed ? { ...headers, [MESSAGE_TYPE_HEADER]: schema.typeName } : headers,
  };
}

export function headerString(headers: IHeaders | undefined, name: string): string | undefined {
  const v = headers?.[name];
  if (v === undefined) return undefined;
  const first = Array.isArray(v) ? v[0] : v;
  return first === undefined ? undefined : Buffer.isBuffer(first) ? first.toString("utf8") : String(first);
}

/** Why a record could not be taken; the text goes into the dead-letter record's reason header. */
export class RecordRejected extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = "RecordRejected";
  }
}

export interface Decoded<T> {
  /** The record's value decoded with the schema its header names (or the topic's default). */
  value: T;
  typeName: string;
  key: string;
  partition: number;
  offset: string;
  headers: Record<string, string>;
  timestamp: string;
}

/**
 * Decodes a record's value with one of the accepted schemas. A value that is not valid Protobuf,
 * names a type the topic does not carry, or has no key is rejected with a reason.
 */
export function decodeRecord<Desc extends DescMessage>(
  schemas: readonly Desc[],
  partition: number,
  m: KafkaMessage,
): Decoded<MessageShape<Desc>> {
  const [defaultSchema] = schemas;
  if (!defaultSchema) throw new Error("decodeRecord needs at least one schema");
  const typeName = headerString(m.headers, MESSAGE_TYPE_HEADER) ?? defaultSchema.typeName;
  const schema = schemas.find((s) => s.typeName === typeName);
  if (!schema) {
    throw new RecordRejected(
      `unsupported ${MESSAGE_TYPE_HEADER} ${JSON.stringify(typeName)}; expected one of ${schemas.map((s) => s.typeName).join(", ")}`,
    );
  }
  if (!m.value || m.value.length === 0) throw new RecordRejected(`empty value; expected ${typeName}`);
  if (!m.key || m.key.length === 0) throw new RecordRejected("record has no key");
  let value: MessageShape<Desc>;
  try {
    value = fromBinary(schema, m.value);
  } catch (e) {
    throw new RecordRejected(`value is not a valid ${typeName}: ${(e as Error).message}`);
  }
  const headers: Record<string, string> = {};
  for (const name of Object.keys(m.headers ?? {})) {
    const v = headerString(m.headers, name);
    if (v !== undefined) headers[name] = v;
  }
  return { value, typeName, key: m.key.toString("utf8"), partition, offset: m.offset, headers, timestamp: m.timestamp };
}

export interface Rejection<T> {
  record: Decoded<T>;
  reason: string;
  /**
   * What to dead-letter instead of the record's own value (e.g. one bad event of a batch record,
   * re-encoded on its own, so the good events of the batch are not dead-lettered with it), and
   * headers to add or override.
   */
  value?: Uint8Array;
  headers?: Record<string, string>;
}

export interface ProtoConsumerOptions<Desc extends DescMessage> {
  kafka: Kafka;
  groupId: string;
  topic: string;
  /** First is the topic's default type; others must be named by the type header. */
  schemas: readonly Desc[];
  /** Business validation of a decoded value: a reason to dead-letter it, or undefined when it is good. */
  validate?: (value: MessageShape<Desc>, record: Decoded<MessageShape<Desc>>) => string | undefined;
  /**
   * Processes the good records of one fetched batch (one partition, in offset order). Must be
   * idempotent: after a crash the batch is delivered again. Records it cannot take for good
   * (e.g. an unknown line) it returns with a reason: they are dead-lettered before the commit.
   * Throwing (a transient failure: a datastore down) commits nothing; the batch is retried.
   */
  handle: (
    records: Decoded<MessageShape<Desc>>[],
    batch: { topic: string; partition: number },
    // biome-ignore lint/suspicious/noConfusingVoidType: a handler that rejects nothing just returns
  ) => Promise<void | Rejection<MessageShape<Desc>>[]>;
  /** Producer used for dead letters. */
  producer: Producer;
  logger: Logger;
  fromBeginning?: boolean;
  /** Called after each batch's offsets were committed (metrics, tests). */
  onCommitted?: (info: { partition: number; offset: string; good: number; dead: number }) => void;
  sessionTimeout?: number;
  partitionsConsumedConcurrently?: number;
  /** Fetch tuning (kafkajs consumer options). */
  fetch?: { maxBytesPerPartition?: number; maxBytes?: number; maxWaitTimeInMs?: number; minBytes?: number };
}

interface DeadLetter {
  m: KafkaMessage;
  reason: string;
  value?: Uint8Array;
  headers?: Record<string, string>;
}

/**
 * A consumer group member that decodes each record with the topic's Protobuf schema, sends what
 * it cannot take to `<topic>.dlq` with the reason in headers (and does not stop for it), hands
 * the rest to `handle`, and commits the batch's offset only after both are done. Offsets are
 * committed explicitly, never on a timer, so a stop or crash redelivers at most the batch in hand.
 */
export class ProtoConsumer<Desc extends DescMessage> {
  readonly consumer: Consumer;
  private readonly log: Logger;

  constructor(private readonly o: ProtoConsumerOptions<Desc>) {
    this.consumer = o.kafka.consumer({
      groupId: o.groupId,
      allowAutoTopicCreation: false,
      sessionTimeout: o.sessionTimeout ?? 30_000,
      heartbeatInterval: 3_000,
      ...o.fetch,
    });
    this.log = o.logger.child({ component: "consumer", topic: o.topic, group: o.groupId });
  }

  async start(): Promise<void> {
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: [this.o.topic], fromBeginning: this.o.fromBeginning ?? false });
    await this.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.o.partitionsConsumedConcurrently ?? 1,
      eachBatch: (payload) => this.onBatch(payload),
    });
  }

  private async onBatch({
    batch,
    resolveOffset,
    heartbeat,
    isRunning,
    isStale,
    commitOffsetsIfNecessary,
  }: EachBatchPayload): Promise<void> {
    if (batch.messages.length === 0 || !isRunning() || isStale()) return;
    const good: Decoded<MessageShape<Desc>>[] = [];
    const dead: DeadLetter[] = [];
    const byOffset = new Map(batch.messages.map((m) => [m.offset, m]));
    for (const m of batch.messages) {
      try {
        const d = decodeRecord(this.o.schemas, batch.partition, m);
        const reason = this.o.validate?.(d.value, d);
        if (reason) dead.push({ m, reason });
        else good.push(d);
      } catch (e) {
        // A validator that throws on a record is that record's problem, not the partition's.
        dead.push({ m, reason: e instanceof RecordRejected ? e.reason : `validation failed: ${(e as Error).message}` });
      }
    }
    if (good.length > 0) {
      // A long batch must not cost the group membership: heartbeat while it runs.
      const beat = setInterval(() => heartbeat().catch(() => {}), 3_000);
      try {
        const rejected = await this.o.handle(good, { topic: batch.topic, partition: batch.partition });
        for (const r of rejected ?? []) {
          const m = byOffset.get(r.record.offset);
          if (m) dead.push({ m, reason: r.reason, value: r.value, headers: r.headers });
        }
      } finally {
        clearInterval(beat);
      }
    }
    if (dead.length > 0) await this.deadLetter(batch.topic, batch.partition, dead);
    const last = batch.lastOffset();
    resolveOffset(last);
    const next = (BigInt(last) + 1n).toString();
    // Through the batch payload, not consumer.commitOffsets: the latter silently drops the commit
    // once stop() has begun, which would lose the offsets of the batch a SIGTERM let finish.
    await commitOffsetsIfNecessary({
      topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next }] }],
    });
    await heartbeat();
    this.o.onCommitted?.({ partition: batch.partition, offset: next, good: good.length, dead: dead.length });
  }

  private async deadLetter(topic: string, partition: number, dead: DeadLetter[]): Promise<void> {
    const failedAt = new Date().toISOString();
    await this.o.producer.send({
      topic: dlqTopic(topic),
      acks: -1,
      messages: dead.map(({ m, reason, value, headers }) => ({
        key: m.key,
        value: value ? Buffer.from(value) : m.value,
        headers: {
          ...m.headers,
          ...headers,
          [DLQ.reason]: reason,
          [DLQ.sourceTopic]: topic,
          [DLQ.sourcePartition]: String(partition),
          [DLQ.sourceOffset]: m.offset,
          [DLQ.consumerGroup]: this.o.groupId,
          [DLQ.failedAt]: failedAt,
        },
      })),
    });
    for (const { m, reason } of dead) {
      this.log.warn({ partition, offset: m.offset, reason }, "record dead-lettered");
    }
  }

  /** Finishes the batch in hand (its offsets are committed inside it), then leaves the group. */
  async stop(): Promise<void> {
    await this.consumer.disconnect();
  }
}
