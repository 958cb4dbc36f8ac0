/**
 * The usage time series in a real InfluxDB: the writer (the usage unit's process with
 * USAGE_COMPONENTS=timeseries) is SIGKILLed at random moments while it consumes usage.events
 * spanning many 5-minute chunks, and restarted; afterwards every line's 5-minute sums and the
 * platform's per-minute totals equal the sums of the distinct events exactly (nothing lost,
 * nothing written twice), and GetLineUsageHistory answers them per step, starting at `from`.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { UsageEventSchema } from "../../../gen/telco/usage/v1/events_pb.js";
import { UsageService } from "../../../gen/telco/usage/v1/usage_pb.js";
import { rejects } from "../../../test/support/assertions.js";
import { AUTH_ENV, bearer, tokenFor, verifier } from "../../../test/support/auth.js";
import { eventually, KAFKA_BROKERS, sleep, TEST_REDIS_URL, testLogger, unique } from "../../../test/support/env.js";
import { spawnUnit, type UnitProcess } from "../../../test/support/processes.js";
import { fieldViolations } from "../../kit/src/errors.js";
import { encodeRecord } from "../../kit/src/kafka.js";
import type { RpcServer } from "../../kit/src/server.js";
import { policy } from "../src/routes.js";
import { createServer } from "../src/server.js";
import { UsageHistory } from "../src/timeseries/history.js";
import { InfluxClient } from "../src/timeseries/influx.js";
import { CHUNK_WINDOW_MS, LINE_STEP_MS, PLATFORM_STEP_MS } from "../src/timeseries/writer.js";
import { Harness } from "./harness.js";

const INFLUX_URL = process.env.INFLUX_URL ?? "http://127.0.0.1:8086";
const LINES = 40;
const MINUTES = 120;

describe("usage time series", () => {
  const h = new Harness("standalone");
  const db = `t_${unique("usage").replaceAll("-", "_")}`;
  const influx = new InfluxClient({ url: INFLUX_URL, db, logger: testLogger("influx-test") });
  const history = new UsageHistory(influx);
  const lines = Array.from({ length: LINES }, (_, i) => unique(`ts${i}`));
  /** line → 5-minute bucket → bytes; minute → bytes / events: the distinct events' sums. */
  const want = new Map<string, Map<number, number>>();
  const platform = new Map<number, { bytes: number; events: number }>();
  // Whole minutes, so the expected buckets are exact; the events span MINUTES minutes before now.
  const t0 = Math.floor((Date.now() - (MINUTES + 10) * 60_000) / CHUNK_WINDOW_MS) * CHUNK_WINDOW_MS;
  let server: RpcServer | undefined;
  let writer: UnitProcess | undefined;

  before(async () => {
    await h.start({ pipeline: false });
    await influx.ensureDatabase();
  });
  after(async () => {
    writer?.child.kill("SIGKILL");
    await writer?.exited;
    await server?.drain();
    await influx.query(`DROP DATABASE "${db}"`).catch(() => {});
    await h.stop();
  });

  it("writes exact 5-minute and per-minute sums although the writer is killed at random moments", async () => {
    const env = {
      USAGE_PORT: "0",
      USAGE_COMPONENTS: "timeseries",
      REDIS_URL: TEST_REDIS_URL,
      KAFKA_BROKERS: KAFKA_BROKERS.join(","),
      USAGE_EVENTS_TOPIC: h.topics.usage,
      USAGE_GROUP_PREFIX: h.groupPrefix,
      USAGE_MONTH_GRACE_DAYS: "40",
      USAGE_KAFKA_SESSION_TIMEOUT_MS: "6000",
      USAGE_TIMESERIES_FLUSH_MS: "300",
      INFLUX_URL,
      INFLUX_DB: db,
      DRAIN_DELAY_MS: "0",
      LOG_LEVEL: "warn",
      ...AUTH_ENV,
    };
    writer = spawnUnit("usage", env);

    // Records in the order and at the (record) time they were produced: one event per line per
    // minute, the record stamped with its minute, so every partition's records span many
    // 5-minute chunks; every seventh record sent twice in a row (a producer retry).
    const records: { line: string; seq: number; bytes: number; atMs: number; stampMs: number }[] = [];
    for (let minute = 0; minute < MINUTES; minute++) {
      for (const [i, line] of lines.entries()) {
        const atMs = t0 + minute * 60_000 + ((i * 997) % 59_000);
        const bytes = 1 + ((minute * 131 + i * 17) % 5_000);
        records.push({ line, seq: minute + 1, bytes, atMs, stampMs: atMs + 300 });
        const b = Math.floor(atMs / LINE_STEP_MS) * LINE_STEP_MS;
        const perLine = want.get(line) ?? new Map<number, number>();
        want.set(line, perLine.set(b, (perLine.get(b) ?? 0) + bytes));
        const m = Math.floor(atMs / PLATFORM_STEP_MS) * PLATFORM_STEP_MS;
        const p = platform.get(m) ?? { bytes: 0, events: 0 };
        platform.set(m, { bytes: p.bytes + bytes, events: p.events + 1 });
      }
    }
    const message = (r: (typeof records)[number]) => ({
      ...encodeRecord(
        UsageEventSchema,
        create(UsageEventSchema, {
          eventId: `${r.line}:${r.seq}`,
          subscriptionId: r.line,
          seq: BigInt(r.seq),
          bytes: BigInt(r.bytes),
          occurredAt: timestampFromMs(r.atMs),
          source: "pgw-test",
        }),
        { key: r.line },
      ),
      partition: h.partitionOf(r.line),
      timestamp: String(r.stampMs),
    });

    let kills = 0;
    let sending = true;
    const killer = (async () => {
      await sleep(2_000);
      while (sending) {
        writer?.child.kill("SIGKILL");
        await writer?.exited;
        kills += 1;
        writer = spawnUnit("usage", env);
        await sleep(1_500 + Math.random() * 2_500);
      }
    })();
    const slices = 16;
    const per = Math.ceil(records.length / slices);
    for (let s = 0; s < slices; s++) {
      const slice = records.slice(s * per, (s + 1) * per);
      const messages = slice.flatMap((r, k) => (k % 7 === 0 ? [message(r), message(r)] : [message(r)]));
      for (let i = 0; i < messages.length; i += 500) {
        await h.producer.send({ topic: h.topics.usage, acks: -1, messages: messages.slice(i, i + 500) });
      }
      await sleep(1_200);
    }
    sending = false;
    await killer;
    assert.ok(kills >= 4, `killed at least 4 times (${kills})`);

    const from = t0;
    const to = t0 + (MINUTES + 5) * 60_000;
    for (const line of lines) {
      const expected = [...(want.get(line) ?? new Map())].sort((a, b) => a[0] - b[0]);
      await eventually(
        async () => {
          const got = await history.lineHistory(line, from, to, LINE_STEP_MS);
          const pairs = got.map((p) => [p.startMs, Number(p.bytes)]);
          return JSON.stringify(pairs) === JSON.stringify(expected) ? true : undefined;
        },
        90_000,
        `the 5-minute sums of ${line}`,
      ).catch(async (e) => {
        const got = await history.lineHistory(line, from, to, LINE_STEP_MS);
        assert.deepEqual(
          got.map((p) => [p.startMs, Number(p.bytes)]),
          expected,
          `${line}: ${(e as Error).message}`,
        );
      });
    }
    const perMinute = await history.platformHistory(from, to, PLATFORM_STEP_MS);
    assert.deepEqual(
      perMinute.map((p) => [p.startMs, Number(p.bytes), Number(p.events)]),
      [...platform].sort((a, b) => a[0] - b[0]).map(([m, p]) => [m, p.bytes, p.events]),
      "platform totals per minute: every distinct event once",
    );
    process.stdout.write(
      `# time series: ${records.length} events on ${LINES} lines, ${kills} SIGKILLs of the writer\n`,
    );
  });

  it("GetLineUsageHistory sums the series per step from `from`, and refuses bad ranges by field", async () => {
    server = createServer(
      { store: h.store, history },
      { logger: testLogger("usage"), drainDelayMs: 0, drainTimeoutMs: 1_000, auth: { verifier, policy } },
    );
    const listening = await server.listen(0);
    const line = lines[3] as string;
    const token = await tokenFor("subscriber", [line], "sub-ts");
    const client = createClient(
      UsageService,
      createGrpcTransport({ baseUrl: listening.url, interceptors: [bearer(token)] }),
    );
    // 30-minute steps from 10 minutes past t0: each point sums the 5-minute sums inside it.
    const from = t0 + 10 * 60_000;
    const step = 30 * 60_000;
    const to = from + 3 * step;
    const got = await client.getLineUsageHistory({
      subscriptionId: line,
      from: timestampFromMs(from),
      to: timestampFromMs(to),
      step: durationFromMs(step),
    });
    const expected = new Map<number, number>();
    for (const [b, bytes] of want.get(line) ?? []) {
      if (b < from || b >= to) continue;
      const start = from + Math.floor((b - from) / step) * step;
      expected.set(start, (expected.get(start) ?? 0) + bytes);
    }
    assert.deepEqual(
      got.points.map((p) => [Number(p.start?.seconds) * 1000, Number(p.bytes)]),
      [...expected].sort((a, b) => a[0] - b[0]),
    );

    const err = await rejects(
      client.getLineUsageHistory({
        subscriptionId: line,
        from: timestampFromMs(to),
        to: timestampFromMs(from),
        step: durationFromMs(90_000),
      }),
      Code.InvalidArgument,
    );
    assert.deepEqual(
      fieldViolations(err)
        .map((v) => v.field)
        .sort(),
      ["step", "to"],
    );
    // A subscriber reads only their own lines.
    await rejects(
      client.getLineUsageHistory({
        subscriptionId: lines[4] as string,
        from: timestampFromMs(from),
        to: timestampFromMs(to),
      }),
      Code.PermissionDenied,
    );
  });
});
