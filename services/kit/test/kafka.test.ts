/**
 * Protobuf records through the real Kafka broker: produced with the generated schema, consumed
 * and decoded by a consumer group; what is not a valid event goes to `<topic>.dlq` with its reason
 * in headers while good records keep flowing; offsets are committed before the consumer stops.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Admin, Kafka, KafkaMessage, Producer } from "kafkajs";
import { type UsageEvent, UsageEventBatchSchema, UsageEventSchema } from "../../../gen/telco/usage/v1/events_pb.js";
import { eventually, KAFKA_BROKERS, testLogger, unique } from "../../../test/support/env.js";
import {
  createKafka,
  createProducer,
  type Decoded,
  DLQ,
  dlqTopic,
  encodeRecord,
  headerString,
  MESSAGE_TYPE_HEADER,
  ProtoConsumer,
} from "../src/kafka.js";

const logger = testLogger("kit-test");
let kafka: Kafka;
let admin: Admin;
let producer: Producer;

before(async () => {
  kafka = createKafka({ brokers: KAFKA_BROKERS, clientId: "kit-test", logger });
  admin = kafka.admin();
  await admin.connect();
  producer = await createProducer(kafka);
});
after(async () => {
  await producer?.disconnect();
  await admin?.disconnect();
});

async function createTopic(partitions = 2): Promise<string> {
  const topic = unique("test.usage.events");
  await admin.createTopics({
    waitForLeaders: true,
    topics: [
      { topic, numPartitions: partitions, replicationFactor: 1 },
      { topic: dlqTopic(topic), numPartitions: partitions, replicationFactor: 1 },
    ],
  });
  return topic;
}

function event(line: string, seq: number, bytes: bigint): UsageEvent {
  return create(UsageEventSchema, {
    eventId: `${line}-${seq}`,
    subscriptionId: line,
    seq: BigInt(seq),
    bytes,
    occurredAt: timestampFromMs(Date.UTC(2026, 10, 24, 3, 0, 0)),
    source: "pgw-test-01",
  });
}

/** Reads every record of a topic from the beginning with a throwaway group. */
async function readAll(topic: string, expected: number): Promise<KafkaMessage[]> {
  const consumer = kafka.consumer({ groupId: unique("reader") });
  const got: KafkaMessage[] = [];
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      got.push(message);
    },
  });
  await eventually(async () => (got.length >= expected ? true : undefined), 30_000, `${expected} records on ${topic}`);
  await consumer.disconnect();
  return got;
}

function consumerFor(topic: string, groupId: string, seen: Decoded<UsageEvent | { events: UsageEvent[] }>[]) {
  return new ProtoConsumer({
    kafka,
    groupId,
    topic,
    schemas: [UsageEventSchema, UsageEventBatchSchema],
    fromBeginning: true,
    producer,
    logger,
    validate: (v) => {
      const events = "events" in v ? v.events : [v as UsageEvent];
      if (events.length === 0) return "batch has no events";
      const bad = events.find((e) => e.bytes === 0n);
      return bad ? `bytes must be > 0 (event ${bad.eventId})` : undefined;
    },
    handle: async (records) => {
      seen.push(...records);
    },
  });
}

describe("Protobuf records on the real broker", () => {
  it("decodes good events, dead-letters bad ones with reasons, and keeps consuming", async () => {
    const topic = await createTopic(1);
    const line = unique("line");
    const junk = Buffer.from("this is not a protobuf message");
    await producer.send({
      topic,
      acks: -1,
      messages: [
        encodeRecord(UsageEventSchema, event(line, 1, 1500n), {
          key: line,
          headers: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
        }),
        { key: line, value: junk },
        encodeRecord(UsageEventSchema, event(line, 2, 0n), { key: line }),
        {
          key: line,
          value: Buffer.from(toBinary(UsageEventSchema, event(line, 3, 10n))),
          headers: { [MESSAGE_TYPE_HEADER]: "telco.usage.v1.Nope" },
        },
        { key: null, value: Buffer.from(toBinary(UsageEventSchema, event(line, 4, 10n))) },
        encodeRecord(
          UsageEventBatchSchema,
          create(UsageEventBatchSchema, { events: [event(line, 5, 100n), event(line, 6, 200n)] }),
          {
            key: line,
            typed: true,
          },
        ),
        encodeRecord(UsageEventSchema, event(line, 7, 700n), { key: line }),
      ],
    });

    const seen: Decoded<UsageEvent | { events: UsageEvent[] }>[] = [];
    const groupId = unique("kit-test-group");
    const consumer = consumerFor(topic, groupId, seen);
    await consumer.start();
    await eventually(async () => (seen.length >= 3 ? true : undefined), 30_000, "3 good records");
    await consumer.stop();

    assert.deepEqual(
      seen.map((d) => [d.offset, d.typeName]),
      [
        ["0", "telco.usage.v1.UsageEvent"],
        ["5", "telco.usage.v1.UsageEventBatch"],
        ["6", "telco.usage.v1.UsageEvent"],
      ],
    );
    const first = seen[0]?.value as UsageEvent;
    assert.equal(first.bytes, 1500n);
    assert.equal(first.subscriptionId, line);
    assert.equal(
      seen[0]?.headers.traceparent,
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      "trace context travels",
    );
    const batch = seen[1]?.value as { events: UsageEvent[] };
    assert.deepEqual(
      batch.events.map((e) => e.bytes),
      [100n, 200n],
    );

    const dead = await readAll(dlqTopic(topic), 4);
    const byOffset = new Map(dead.map((m) => [headerString(m.headers, DLQ.sourceOffset), m]));
    const reason = (o: string) => headerString(byOffset.get(o)?.headers, DLQ.reason) ?? "";
    assert.match(reason("1"), /value is not a valid telco\.usage\.v1\.UsageEvent/);
    assert.match(reason("2"), /bytes must be > 0/);
    assert.match(reason("3"), /unsupported telco-message-type "telco\.usage\.v1\.Nope"/);
    assert.match(reason("4"), /record has no key/);
    const junkDead = byOffset.get("1");
    assert.deepEqual(junkDead?.value, junk, "the original bytes are kept");
    assert.equal(junkDead?.key?.toString(), line, "and the original key");
    assert.equal(headerString(junkDead?.headers, DLQ.sourceTopic), topic);
    assert.equal(headerString(junkDead?.headers, DLQ.sourcePartition), "0");
    assert.equal(headerString(junkDead?.headers, DLQ.consumerGroup), groupId);

    // Offsets were committed before stop: the group's position is the end of the partition.
    const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
    assert.equal(offsets?.partitions.find((p) => p.partition === 0)?.offset, "7");
  });

  it("a restarted member resumes after the committed offset: nothing redelivered, nothing skipped", async () => {
    const topic = await createTopic(2);
    const groupId = unique("kit-test-group");
    const lines = [unique("a"), unique("b"), unique("c"), unique("d")];
    await producer.send({
      topic,
      messages: lines.map((l, i) => encodeRecord(UsageEventSchema, event(l, i + 1, 10n), { key: l })),
    });

    const first: Decoded<UsageEvent | { events: UsageEvent[] }>[] = [];
    const c1 = consumerFor(topic, groupId, first);
    await c1.start();
    await eventually(async () => (first.length >= 4 ? true : undefined), 30_000, "first 4");
    await c1.stop();

    const more = [unique("e"), unique("f")];
    await producer.send({
      topic,
      messages: more.map((l) => encodeRecord(UsageEventSchema, event(l, 1, 10n), { key: l })),
    });
    const second: Decoded<UsageEvent | { events: UsageEvent[] }>[] = [];
    const c2 = consumerFor(topic, groupId, second);
    await c2.start();
    await eventually(async () => (second.length >= 2 ? true : undefined), 30_000, "2 more");
    await new Promise((r) => setTimeout(r, 500)); // room for any wrongful redelivery to show up
    await c2.stop();
    assert.deepEqual(second.map((d) => d.key).sort(), [...more].sort());
    assert.deepEqual(first.map((d) => d.key).sort(), [...lines].sort());
  });
});

describe("failures inside the consumer", () => {
  it("holds the offset while the handler fails, then redelivers; rejected records and throwing validators are dead-lettered", async () => {
    const topic = await createTopic(1);
    const groupId = unique("kit-test-group");
    const line = unique("line");
    await producer.send({
      topic,
      messages: [1, 2, 3, 4].map((seq) =>
        encodeRecord(UsageEventSchema, event(line, seq, BigInt(seq * 10)), { key: line }),
      ),
    });

    let attempts = 0;
    const handled: string[] = [];
    const consumer = new ProtoConsumer({
      kafka,
      groupId,
      topic,
      schemas: [UsageEventSchema],
      fromBeginning: true,
      producer,
      logger,
      validate: (v) => {
        if (v.seq === 2n) throw new Error("validator bug on seq 2");
        return undefined;
      },
      handle: async (records) => {
        attempts++;
        if (attempts === 1) {
          // A transient failure (say Redis restarting): nothing may be committed.
          const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
          assert.equal(offsets?.partitions[0]?.offset, "-1");
          throw new Error("datastore unavailable");
        }
        handled.push(...records.map((r) => r.offset));
        return records.filter((r) => r.value.seq === 3n).map((record) => ({ record, reason: "unknown line" }));
      },
    });
    await consumer.start();
    await eventually(async () => (handled.length >= 3 ? true : undefined), 60_000, "redelivery after the failure");
    await eventually(
      async () => {
        const [o] = await admin.fetchOffsets({ groupId, topics: [topic] });
        return o?.partitions[0]?.offset === "4" ? true : undefined;
      },
      10_000,
      "commit after the successful retry",
    );
    await consumer.stop();
    assert.ok(attempts >= 2, "the failed batch was delivered again");
    assert.deepEqual(handled, ["0", "2", "3"], "every good record handled after the retry");

    const dead = await readAll(dlqTopic(topic), 2);
    const reasons = Object.fromEntries(
      dead.map((m) => [headerString(m.headers, DLQ.sourceOffset), headerString(m.headers, DLQ.reason)]),
    );
    assert.deepEqual(reasons, { "1": "validation failed: validator bug on seq 2", "2": "unknown line" });
  });
});

describe("pipelined batches", () => {
  it("hands on the next batch before the last is done, commits in order, and re-reads from a failed batch", async () => {
    const topic = await createTopic(1);
    const groupId = unique("kit-test-group");
    const line = unique("line");
    const total = 40;
    for (let seq = 1; seq <= total; seq++) {
      await producer.send({ topic, messages: [encodeRecord(UsageEventSchema, event(line, seq, 10n), { key: line })] });
    }
    let inFlight = 0;
    let maxInFlight = 0;
    let failedAt: string | undefined;
    let retried = false;
    let secondFailure = false;
    /** Offsets handled to the end, in the order their batches finished. */
    const done: number[] = [];
    const commits: { offset: number; afterRetry: boolean }[] = [];
    const consumer = new ProtoConsumer({
      kafka,
      groupId,
      topic,
      schemas: [UsageEventSchema],
      fromBeginning: true,
      producer,
      logger,
      pipeline: 3,
      // Small fetches: a few records per batch.
      fetch: { maxBytesPerPartition: 300, maxWaitTimeInMs: 50 },
      handle: async (records) => {
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        try {
          await new Promise((r) => setTimeout(r, 20 + Math.random() * 60));
          const offsets = records.map((r) => Number(r.offset));
          if (failedAt === undefined && offsets.some((o) => o >= 12)) {
            failedAt = records[0]?.offset;
            throw new Error("datastore unavailable");
          }
          // A second failure, while the first one's batches are read again.
          if (failedAt !== undefined && !secondFailure && offsets.some((o) => o >= 25)) {
            secondFailure = true;
            throw new Error("datastore unavailable again");
          }
          if (failedAt !== undefined && offsets.includes(Number(failedAt))) retried = true;
          done.push(...offsets);
        } finally {
          inFlight -= 1;
        }
      },
      onCommitted: ({ offset }) => commits.push({ offset: Number(offset), afterRetry: retried }),
    });
    await consumer.start();
    await eventually(
      async () => {
        const [o] = await admin.fetchOffsets({ groupId, topics: [topic] });
        return o?.partitions[0]?.offset === String(total) ? true : undefined;
      },
      60_000,
      "every record committed",
    );
    await consumer.stop();
    assert.ok(maxInFlight >= 2, `batches overlapped (at most ${maxInFlight} at once)`);
    assert.ok(failedAt !== undefined && retried && secondFailure, "the failed batches were read again");
    for (let o = 0; o < total; o++) assert.ok(done.includes(o), `offset ${o} handled`);
    for (let i = 1; i < commits.length; i++) {
      assert.ok((commits[i]?.offset ?? 0) > (commits[i - 1]?.offset ?? 0), "commits only move forward");
    }
    for (const c of commits) {
      if (c.offset > Number(failedAt))
        assert.ok(c.afterRetry, `offset ${c.offset} committed before the failed batch was redone`);
    }
  });
});
