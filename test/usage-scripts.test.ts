/**
 * The usage tools: the load generator puts exactly the reports it says on a topic, refuses
 * misuse with a readable message; the benchmark's short smoke run ends with its JSON line, every
 * produced event taken and every expected alert received (the figures are the full runs' job).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import type { Admin, Producer } from "kafkajs";
import { UsageEventBatchSchema } from "../gen/telco/usage/v1/events_pb.js";
import { UsageGenerator } from "../scripts/lib/usage-generator.js";
import { createKafka, headerString, MESSAGE_TYPE_HEADER } from "../services/kit/src/kafka.js";
import { MonthClock } from "../services/usage/src/months.js";
import { eventually, KAFKA_BROKERS, testLogger, unique } from "./support/env.js";
import { run } from "./support/processes.js";

const tsx = (script: string, args: string[], env: Record<string, string> = {}, timeoutMs = 120_000) =>
  run(process.execPath, ["--import", "tsx", script, ...args], { env, timeoutMs });
const lastJson = (out: string) => JSON.parse(out.trim().split("\n").pop() ?? "{}") as Record<string, unknown>;

const kafka = createKafka({ brokers: KAFKA_BROKERS, clientId: "usage-scripts-test", logger: testLogger("test") });
let admin: Admin;
const topic = unique("t.load.usage.events");
before(async () => {
  admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 3, replicationFactor: 1 }] });
});
after(async () => {
  await admin.deleteTopics({ topics: [topic] }).catch(() => {});
  await admin.disconnect();
});

describe("npm run load:usage", () => {
  it("produces every line's reports, batched per partition, with the duplicates it reports", async () => {
    const r = await tsx("scripts/usage-load.ts", [
      "--lines",
      "50",
      "--interval",
      "0.5",
      "--seconds",
      "2",
      "--duplicates",
      "0.1",
      "--batch-size",
      "20",
      "--topic",
      topic,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /\[load\] 50 lines every 0\.5 s = 100 events\/s/);
    const summary = lastJson(r.stdout);
    const events = summary.events as number;
    const dups = summary.duplicates_sent as number;
    assert.ok(events >= 150 && events <= 250, `about 2 s × 100 events/s (${events})`);

    const seen: { line: string; seq: bigint; partition: number }[] = [];
    const c = kafka.consumer({ groupId: unique("load-reader") });
    await c.connect();
    await c.subscribe({ topic, fromBeginning: true });
    await c.run({
      eachMessage: async ({ message, partition }) => {
        assert.equal(headerString(message.headers, MESSAGE_TYPE_HEADER), UsageEventBatchSchema.typeName);
        const batch = fromBinary(UsageEventBatchSchema, message.value as Buffer);
        assert.ok(batch.events.length <= 20);
        for (const e of batch.events) seen.push({ line: e.subscriptionId, seq: e.seq, partition });
      },
    });
    await eventually(async () => (seen.length >= events + dups ? true : undefined), 20_000, "every report");
    await c.disconnect();
    assert.equal(seen.length, events + dups);
    const distinct = new Set(seen.map((s) => `${s.line}:${s.seq}`));
    assert.equal(distinct.size, events, "each report once, plus the duplicates");
    // A line's reports all go to one partition.
    const partitionOf = new Map<string, number>();
    for (const s of seen) {
      assert.equal(partitionOf.get(s.line) ?? s.partition, s.partition, s.line);
      partitionOf.set(s.line, s.partition);
    }
    assert.ok([...partitionOf.keys()].every((l) => /^L\d{10}$/.test(l)));
  });

  it("in month-boundary mode dates the first half of the run last month, the second half this month", async () => {
    const boundaryTopic = unique("t.load.boundary");
    await admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic: boundaryTopic, numPartitions: 1, replicationFactor: 1 }],
    });
    try {
      const r = await tsx("scripts/usage-load.ts", [
        ...["--lines", "20", "--interval", "0.2", "--seconds", "2", "--month-boundary", "--topic", boundaryTopic],
      ]);
      assert.equal(r.code, 0, r.stderr);
      const events = lastJson(r.stdout).events as number;
      const clock = new MonthClock("Asia/Seoul");
      const boundary = clock.monthOf(Date.now()).startMs;
      const at: number[] = [];
      const c = kafka.consumer({ groupId: unique("boundary-reader") });
      await c.connect();
      await c.subscribe({ topic: boundaryTopic, fromBeginning: true });
      await c.run({
        eachMessage: async ({ message }) => {
          for (const e of fromBinary(UsageEventBatchSchema, message.value as Buffer).events) {
            at.push(Number(e.occurredAt?.seconds) * 1000 + Math.floor((e.occurredAt?.nanos ?? 0) / 1e6));
          }
        },
      });
      await eventually(async () => (at.length >= events ? true : undefined), 20_000, "every report");
      await c.disconnect();
      const before = at.filter((t) => t < boundary).length;
      assert.ok(
        before > events * 0.3 && before < events * 0.7,
        `${before} of ${events} dated before ${new Date(boundary).toISOString()}`,
      );
      assert.ok(
        Math.min(...at) >= boundary - 1_500 && Math.max(...at) < boundary + 1_500,
        "within the run's span around it",
      );
    } finally {
      await admin.deleteTopics({ topics: [boundaryTopic] }).catch(() => {});
    }
  });

  it("catches up after a stall in requests the broker accepts (one tick's 50,000 events are 3 MB)", async () => {
    // Every event due at once: the first tick makes 50,000 events, 250 batch records of 200 into
    // one partition; as one produce request that is more than the broker's 1 MB.
    const producer = kafka.producer();
    await producer.connect();
    const own = unique("t.load.usage.catch-up");
    await admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic: own, numPartitions: 1, replicationFactor: 1 }],
    });
    try {
      const sizes: number[] = [];
      const gen = new UsageGenerator({
        producer: {
          send: (r: Parameters<Producer["send"]>[0]) => {
            sizes.push(r.messages.reduce((n, m) => n + (m.value as Buffer).length, 0));
            return producer.send(r);
          },
        } as Producer,
        topic: own,
        partitions: 1,
        lines: 60_000,
        intervalS: 0.001,
        seconds: 0,
        maxEvents: 60_000,
        mode: "batch",
        batchSize: 200,
        duplicates: 0,
        reorder: 0,
        late: 0,
        lateSeconds: 0,
        meanBytes: 1_000,
      });
      const r = await gen.run();
      assert.equal(r.events, 60_000);
      assert.ok(Math.max(...sizes) <= 600 * 1024, `largest request ${Math.max(...sizes)} bytes`);
      const offsets = await admin.fetchTopicOffsets(own);
      assert.equal(offsets[0]?.high, String(r.records), "every record on the topic");
    } finally {
      await producer.disconnect();
      await admin.deleteTopics({ topics: [own] }).catch(() => {});
    }
  });

  it("explains misuse and exits 2", async () => {
    for (const args of [
      ["--mode", "fast"],
      ["--lines", "0"],
      ["--duplicates", "2"],
      ["--bogus"],
      ["--topic", unique("nope")],
    ]) {
      const r = await tsx("scripts/usage-load.ts", [...args, "--seconds", "1"]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /^load:usage: .+/m, args.join(" "));
    }
  });
});

describe("npm run bench:usage (smoke run)", () => {
  it("ends with its JSON line: every event taken, every alert received", async () => {
    const r = await tsx(
      "scripts/bench-usage.ts",
      ["--lines", "2000", "--seconds", "4", "--interval", "0.5", "--baseline-seconds", "1"],
      {},
      300_000,
    );
    assert.equal(r.code, 0, r.stderr.slice(-2000));
    const j = lastJson(r.stdout);
    for (const key of ["events_per_s", "p99_ms", "bytes_per_line", "baseline_kafka_per_s", "baseline_redis_per_s"]) {
      assert.equal(typeof j[key], "number", key);
      assert.ok((j[key] as number) > 0, `${key} = ${j[key]}`);
    }
    assert.equal(j.caught_up, true);
    assert.equal(
      (j.counted_events as number) + (j.duplicates_dropped as number),
      j.produced_events,
      "every produced event counted once or dropped as a duplicate",
    );
    assert.equal(j.alerts_received, j.alerts_expected);
    assert.ok((j.alerts_expected as number) > 0);
  });
});
