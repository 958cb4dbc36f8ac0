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
import { kafkaConsumed, kafkaConsumerLag, kafkaDeadLettered, kafkaProduced } from "./metrics.js";
import {
  type Context,
  context,
  contextFromTraceparent,
  failSpan,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  trace,
  traceparentOf,
  tracer,
  tracingOn,
} from "./telemetry.js";

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

export interface PublishOptions {
  /**
   * Give records with no trace context a span of their own (a new trace) when tracing is on;
   * `fallback` supplies their traceparent when it is off. Without it such records just go out.
   */
  newTrace?: { fallback: () => string };
}

/**
 * Sends records with acks=all, each with a PRODUCER span `<topic> publish` (messaging.*
 * conventions) under its own trace context: its traceparent header if it has one, else the active
 * span. The span's context replaces the header, so the consumer's span is the span's child and
 * the trace continues across the broker. Records with no context at all (a billing run's
 * million bill messages) get no span. Counted in telco_kafka_records_produced_total.
 */
export async function publish(
  producer: Producer,
  topicMessages: { topic: string; messages: Message[] }[],
  o: PublishOptions = {},
): Promise<void> {
  const spans: Span[] = [];
  const active = trace.getSpan(context.active());
  for (const { topic, messages } of topicMessages) {
    for (const m of messages) {
      const headers = { ...(m.headers ?? {}) } as Record<string, string | Buffer>;
      const own = headerString(headers as IHeaders, "traceparent");
      if (!tracingOn()) {
        // No spans: a record that starts a trace still gets a traceparent of its own.
        if (!own && o.newTrace) {
          const tp = o.newTrace.fallback();
          if (tp) headers.traceparent = tp;
        }
        m.headers = headers;
        continue;
      }
      let parent: Context | undefined;
      if (own) parent = contextFromTraceparent(own, headerString(headers as IHeaders, "tracestate"));
      else if (active?.isRecording()) parent = context.active();
      else if (o.newTrace) parent = ROOT_CONTEXT;
      if (!parent) continue;
      const span = tracer().startSpan(
        `${topic} publish`,
        {
          kind: SpanKind.PRODUCER,
          attributes: {
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
          },
        },
        parent,
      );
      const tp = traceparentOf(span) || own || o.newTrace?.fallback() || "";
      if (tp) headers.traceparent = tp;
      m.headers = headers;
      spans.push(span);
    }
  }
  try {
    await producer.sendBatch({ acks: -1, topicMessages });
  } catch (e) {
    for (const span of spans) failSpan(span, e);
    throw e;
  } finally {
    for (const span of spans) span.end();
  }
  for (const { topic, messages } of topicMessages) kafkaProduced.inc({ topic }, messages.length);
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
export function decodeRecord<Desc extends DescMessage, T = MessageShape<Desc>>(
  schemas: readonly Desc[],
  partition: number,
  m: KafkaMessage,
  decodeValue: (schema: Desc, value: Buffer) => T = (schema, value) => fromBinary(schema, value) as T,
): Decoded<T> {
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
  let value: T;
  try {
    value = decodeValue(schema, m.value);
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

export interface ProtoConsumerOptions<Desc extends DescMessage, T = MessageShape<Desc>> {
  kafka: Kafka;
  groupId: string;
  topic: string;
  /** First is the topic's default type; others must be named by the type header. */
  schemas: readonly Desc[];
  /** Business validation of a decoded value: a reason to dead-letter it, or undefined when it is good. */
  validate?: (value: T, record: Decoded<T>) => string | undefined;
  /**
   * Reads a value instead of `fromBinary` (a hot path's own reader of the same schema); what it
   * throws dead-letters the record as not a valid value of the schema.
   */
  decodeValue?: (schema: Desc, value: Buffer) => T;
  /**
   * Processes the good records of one fetched batch (one partition, in offset order). Must be
   * idempotent: after a crash the batch is delivered again. Records it cannot take for good
   * (e.g. an unknown line) it returns with a reason: they are dead-lettered before the commit.
   * Throwing (a transient failure: a datastore down) commits nothing; the batch is retried.
   */
  handle: (
    records: Decoded<T>[],
    batch: { topic: string; partition: number },
    // biome-ignore lint/suspicious/noConfusingVoidType: a handler that rejects nothing just returns
  ) => Promise<void | Rejection<T>[]>;
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
  /**
   * Batches of one partition in work at once (default 1). With more, the next batch is fetched
   * and decoded, and handed to `handle`, while the previous one is still being handled, so a
   * handler that waits on a datastore keeps both the datastore and the process busy. `handle`
   * must then keep the effects of one partition's batches in their order. Offsets are still
   * committed in order, each once its batch and all before it are done; when a batch fails, the
   * later ones are not committed either and the partition is read again from the failed batch.
   */
  pipeline?: number;
}

interface Job {
  /** The batch's first offset. */
  first: string;
  /** Settles (never rejects) once the batch is handled and committed, or will be read again. */
  committed: Promise<void>;
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
export class ProtoConsumer<Desc extends DescMessage, T = MessageShape<Desc>> {
  readonly consumer: Consumer;
  private readonly log: Logger;
  /** Pipelined batches per partition, oldest first. */
  private readonly jobs = new Map<number, Job[]>();
  /** Partitions read again from this offset after a failed batch (until a batch from there arrives). */
  private readonly rewound = new Map<number, string>();
  /** Per partition, which read of it this is: a rewind or a rebalance starts another. */
  private readonly reads = new Map<number, number>();
  private stopping = false;
  /** Partitions whose lag this member reports. */
  private readonly lagged = new Set<string>();

  constructor(private readonly o: ProtoConsumerOptions<Desc, T>) {
    this.consumer = o.kafka.consumer({
      groupId: o.groupId,
      allowAutoTopicCreation: false,
      sessionTimeout: o.sessionTimeout ?? 30_000,
      heartbeatInterval: 3_000,
      ...o.fetch,
    });
    this.log = o.logger.child({ component: "consumer", topic: o.topic, group: o.groupId });
    // After a rebalance every partition is read from its committed offset again: batches of the
    // earlier read still in work must not commit, and no earlier rewind holds any more.
    this.consumer.on(this.consumer.events.GROUP_JOIN, (e) => {
      for (const p of new Set([...this.jobs.keys(), ...this.rewound.keys()])) {
        this.reads.set(p, (this.reads.get(p) ?? 0) + 1);
      }
      this.rewound.clear();
      // Partitions now another member's: their lag is that member's to report.
      const mine = new Set((e.payload.memberAssignment[o.topic] ?? []).map(String));
      for (const p of this.lagged) if (!mine.has(p)) this.forgetLag(p);
    });
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
    // As fetched: this batch and what follows it are not committed yet (a consumer stuck on a
    // batch shows its lag growing).
    const first = batch.firstOffset() ?? batch.messages[0]?.offset ?? "0";
    this.setLag(batch.partition, BigInt(batch.highWatermark) - BigInt(first));
    const good: Decoded<T>[] = [];
    const dead: DeadLetter[] = [];
    const byOffset = new Map(batch.messages.map((m) => [m.offset, m]));
    for (const m of batch.messages) {
      try {
        const d = decodeRecord(this.o.schemas, batch.partition, m, this.o.decodeValue);
        const reason = this.o.validate?.(d.value, d);
        if (reason) dead.push({ m, reason });
        else good.push(d);
      } catch (e) {
        // A validator that throws on a record is that record's problem, not the partition's.
        dead.push({ m, reason: e instanceof RecordRejected ? e.reason : `validation failed: ${(e as Error).message}` });
      }
    }
    const handleAndDeadLetter = async () => {
      if (good.length > 0) {
        const traced = this.processSpans(good, batch.topic, batch.partition);
        try {
          const rejected = await context.with(traced.context, () =>
            this.o.handle(good, { topic: batch.topic, partition: batch.partition }),
          );
          for (const r of rejected ?? []) {
            const m = byOffset.get(r.record.offset);
            if (m) dead.push({ m, reason: r.reason, value: r.value, headers: r.headers });
          }
        } catch (e) {
          for (const span of traced.spans) failSpan(span, e);
          throw e;
        } finally {
          for (const span of traced.spans) span.end();
        }
      }
      if (dead.length > 0) await this.deadLetter(batch.topic, batch.partition, dead);
    };
    const last = batch.lastOffset();
    const next = (BigInt(last) + 1n).toString();
    // Through the batch payload, not consumer.commitOffsets: the latter silently drops the commit
    // once stop() has begun, which would lose the offsets of the batch a SIGTERM let finish.
    const commit = async () => {
      await commitOffsetsIfNecessary({
        topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next }] }],
      });
      kafkaConsumed.inc({ topic: batch.topic, group: this.o.groupId }, good.length + dead.length);
      // The log end offset as of this fetch less what is now committed.
      this.setLag(batch.partition, BigInt(batch.highWatermark) - BigInt(next));
      this.o.onCommitted?.({ partition: batch.partition, offset: next, good: good.length, dead: dead.length });
    };
    if ((this.o.pipeline ?? 1) <= 1) {
      // A long batch must not cost the group membership: heartbeat while it runs.
      const beat = setInterval(() => heartbeat().catch(() => {}), 3_000);
      try {
        await handleAndDeadLetter();
      } finally {
        clearInterval(beat);
      }
      resolveOffset(last);
      await commit();
      await heartbeat();
      return;
    }
    // Pipelined: the batch is handled at once, and committed after the ones before it, while
    // kafkajs goes on. A batch whose work fails rewinds the partition to it: it and every batch
    // read after it (an older "read" of the partition) are never committed, and are read again.
    const p = batch.partition;
    const rewoundTo = this.rewound.get(p);
    if (rewoundTo !== undefined) {
      // After a failure, only a batch that reads the failed one again may go on.
      if (BigInt(first) > BigInt(rewoundTo)) return;
      this.rewound.delete(p);
    }
    if (this.stopping) return;
    const queue = this.jobs.get(p) ?? [];
    this.jobs.set(p, queue);
    const before = queue[queue.length - 1]?.committed;
    const read = this.reads.get(p) ?? 0;
    const work = handleAndDeadLetter();
    // Looked at below, once the earlier batches are done; not an unhandled rejection meanwhile.
    void work.catch(() => {});
    const job: Job = {
      first,
      committed: (async () => {
        await before; // never rejects: commits keep their order
        try {
          await work;
        } catch (e) {
          // A batch of a read already superseded is read again with it; only the current read rewinds.
          if ((this.reads.get(p) ?? 0) === read) this.rewind(batch.topic, p, first, e);
          return;
        }
        // A failure before it (or a rebalance) started another read of the partition.
        if ((this.reads.get(p) ?? 0) !== read) return;
        try {
          await commit();
        } catch (e) {
          // Not a loss: a later batch's commit covers this one, or the group's next owner reads it again.
          this.log.warn({ partition: p, offset: next, err: (e as Error).message }, "offset commit failed");
        }
      })(),
    };
    queue.push(job);
    void job.committed.finally(() => {
      const i = queue.indexOf(job);
      if (i >= 0) queue.splice(i, 1);
    });
    resolveOffset(last);
    if (queue.length >= (this.o.pipeline ?? 1)) {
      const beat = setInterval(() => heartbeat().catch(() => {}), 3_000);
      try {
        while (queue.length >= (this.o.pipeline ?? 1)) await (queue[0] as Job).committed;
      } finally {
        clearInterval(beat);
      }
    }
    await heartbeat();
  }

  /**
   * A CONSUMER span per record that carries a W3C traceparent, child of the producer's span; the
   * record's traceparent header is replaced by the span's, so what the handler passes on (an
   * alert's outbox entry, a message row) continues the trace from here. The handler runs in the
   * first traced record's span (its datastore calls appear there).
   */
  private processSpans(records: Decoded<T>[], topic: string, partition: number): { spans: Span[]; context: Context } {
    const spans: Span[] = [];
    let first: Context | undefined;
    if (!tracingOn()) return { spans, context: context.active() };
    for (const r of records) {
      const tp = r.headers.traceparent;
      if (!tp) continue;
      const parent = contextFromTraceparent(tp, r.headers.tracestate);
      const span = tracer().startSpan(
        `${topic} process`,
        {
          kind: SpanKind.CONSUMER,
          attributes: {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": String(partition),
            "messaging.consumer.group.name": this.o.groupId,
            "messaging.kafka.offset": Number(r.offset),
            "messaging.batch.message_count": records.length,
          },
        },
        parent,
      );
      const own = traceparentOf(span);
      if (own) r.headers.traceparent = own;
      spans.push(span);
      // A sampled record's span, if the batch has one (an unsampled first record would hide
      // the datastore calls from the sampled trace).
      if (!first && span.isRecording()) first = trace.setSpan(parent, span);
    }
    return { spans, context: first ?? context.active() };
  }

  private setLag(partition: number, lag: bigint): void {
    const p = String(partition);
    this.lagged.add(p);
    kafkaConsumerLag.set({ topic: this.o.topic, partition: p, group: this.o.groupId }, Number(lag > 0n ? lag : 0n));
  }

  private forgetLag(p: string): void {
    this.lagged.delete(p);
    kafkaConsumerLag.remove({ topic: this.o.topic, partition: p, group: this.o.groupId });
  }

  /** A batch failed: read the partition again from the earliest failed batch (none after it is committed). */
  private rewind(topic: string, partition: number, offset: string, err: unknown): void {
    const earlier = this.rewound.get(partition);
    const to = earlier !== undefined && BigInt(earlier) < BigInt(offset) ? earlier : offset;
    this.rewound.set(partition, to);
    this.reads.set(partition, (this.reads.get(partition) ?? 0) + 1);
    this.log.warn(
      { partition, offset: to, err: (err as Error)?.message },
      "batch failed; reading the partition again from it",
    );
    try {
      this.consumer.seek({ topic, partition, offset: to });
    } catch (e) {
      // Not ours any more (a rebalance): its new owner starts from the last committed offset.
      this.log.debug({ partition, err: (e as Error).message }, "seek after a failed batch not possible");
    }
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
    kafkaDeadLettered.inc({ topic, group: this.o.groupId }, dead.length);
    kafkaProduced.inc({ topic: dlqTopic(topic) }, dead.length);
    for (const { m, reason } of dead) {
      this.log.warn({ partition, offset: m.offset, reason }, "record dead-lettered");
    }
  }

  /**
   * Finishes the batches in hand (their offsets are committed), then leaves the group. Pipelined
   * batches are waited for before disconnecting: fetching stops first, so that no new one starts.
   */
  async stop(): Promise<void> {
    if ((this.o.pipeline ?? 1) > 1) {
      this.stopping = true;
      try {
        this.consumer.pause([{ topic: this.o.topic }]);
      } catch {
        // Not running yet.
      }
      // Until no batch is in work (one handed over just before the pause included).
      for (let settled = 0; settled < 2; ) {
        const all = [...this.jobs.values()].flat();
        await Promise.all(all.map((j) => j.committed));
        settled = all.length === 0 ? settled + 1 : 0;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    await this.consumer.disconnect();
    for (const p of [...this.lagged]) this.forgetLag(p);
  }
}
