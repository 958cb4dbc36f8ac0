/**
 * Invariant 8 for usage.events: every record or event the aggregator cannot count goes to
 * `usage.events.dlq` with its reason in the headers (one bad event of a batch alone, re-encoded),
 * and the consumer keeps counting the good ones.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create, fromBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { KafkaMessage } from "kafkajs";
import { UsageEventBatchSchema, UsageEventSchema } from "../../../gen/telco/usage/v1/events_pb.js";
import { eventually, unique } from "../../../test/support/env.js";
import { DLQ, encodeRecord, headerString, MESSAGE_TYPE_HEADER } from "../../kit/src/kafka.js";
import { BATCH_INDEX_HEADER } from "../src/aggregator.js";
import { Harness } from "./harness.js";

describe("usage.events dead letters", () => {
  const h = new Harness("standalone");
  const dead = h.dead;
  before(async () => {
    await h.start();
    await h.readDeadLetters();
  });
  after(() => h.stop());

  it("dead-letters each bad record or event with its reason and keeps counting", async () => {
    const line = unique("dlq");
    const other = unique("dlq-other");
    const now = Date.now() - 1000;
    const partition = h.partitionOf(line);
    const ev = (seq: number, bytes: number, atMs = now, sid = line) =>
      create(UsageEventSchema, {
        eventId: `${sid}:${seq}`,
        subscriptionId: sid,
        seq: BigInt(seq),
        bytes: BigInt(bytes),
        occurredAt: timestampFromMs(atMs),
        source: "pgw-test",
      });
    const single = (e: ReturnType<typeof ev>, key = line) => ({
      ...encodeRecord(UsageEventSchema, e, { key }),
      partition,
    });
    const threeMonthsAgo = h.store.clock.shift(h.store.clock.monthOf(now), -3).startMs + 1000;
    await h.producer.send({
      topic: h.topics.usage,
      acks: -1,
      messages: [
        single(ev(1, 100)),
        { key: line, value: Buffer.from("definitely not protobuf \xff\xfe"), partition },
        single(ev(2, 0)),
        single(ev(3, 10, Date.now() + 3_600_000)),
        single(ev(4, 10), other),
        single(ev(5, 10, threeMonthsAgo)),
        {
          ...encodeRecord(
            UsageEventBatchSchema,
            create(UsageEventBatchSchema, { events: [ev(6, 1000), ev(7, 0), ev(8, 1000)] }),
            {
              key: line,
              typed: true,
            },
          ),
          partition,
        },
        single(ev(100, 1)),
        single(ev(9, 5)), // 91 behind the highest: too late to tell from a redelivery
        single(ev(101, 7)),
      ],
    });
    await h.idle();
    const got = await h.store.get(line, h.store.clock.monthOf(now));
    assert.equal(got.usedBytes, 100n + 1000n + 1000n + 1n + 7n, "good events around the bad ones are counted");

    const mine = await eventually(
      async () => {
        const m = dead.filter((d) => headerString(d.headers, DLQ.sourceTopic) === h.topics.usage);
        return m.length >= 7 ? m : undefined;
      },
      20_000,
      "seven dead letters",
    );
    const offset = (d: KafkaMessage) => Number(headerString(d.headers, DLQ.sourceOffset));
    mine.sort((a, b) => offset(a) - offset(b));
    const reasons = mine.map((d) => headerString(d.headers, DLQ.reason) ?? "");
    const expect = [
      /value is not a valid telco\.usage\.v1\.UsageEvent/,
      /^bytes must be > 0$/,
      /occurred_at .* is in the future/,
      /record key .* is not the event's subscription_id/,
      /whose counters are closed/,
      /^batch event 1: bytes must be > 0$/,
      /seq 9 is more than 52 behind the highest seen/,
    ];
    assert.equal(mine.length, expect.length, reasons.join("\n"));
    for (const [i, re] of expect.entries()) assert.match(reasons[i] as string, re);
    for (const d of mine) {
      assert.equal(headerString(d.headers, DLQ.sourcePartition), String(partition));
      assert.match(headerString(d.headers, DLQ.sourceOffset) ?? "", /^\d+$/);
      assert.equal(headerString(d.headers, DLQ.consumerGroup), `${h.groupPrefix}-aggregator`);
    }
    // The bad event of the batch travels alone, as a single event, with its index.
    const fromBatch = mine[5] as KafkaMessage;
    assert.equal(headerString(fromBatch.headers, MESSAGE_TYPE_HEADER), UsageEventSchema.typeName);
    assert.equal(headerString(fromBatch.headers, BATCH_INDEX_HEADER), "1");
    assert.equal(fromBinary(UsageEventSchema, fromBatch.value as Buffer).seq, 7n);
    // The undecodable record keeps its original bytes.
    assert.equal((mine[0] as KafkaMessage).value?.toString("latin1").startsWith("definitely not protobuf"), true);
  });
});
