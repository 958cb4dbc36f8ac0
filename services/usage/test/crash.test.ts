/**
 * Crash safety of the counting path with real processes: an aggregator process and a relay
 * process (the usage unit's main.ts, split by USAGE_COMPONENTS) are SIGKILLed at random moments
 * during a load and restarted; afterwards every line's total is exact and every (line, month,
 * level) alert reached notification.requests (none lost, no request id missing or unexpected).
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { AUTH_ENV } from "../../../test/support/auth.js";
import { KAFKA_BROKERS, sleep, TEST_REDIS_URL, unique } from "../../../test/support/env.js";
import { spawnUnit, type UnitProcess, waitForLog } from "../../../test/support/processes.js";
import { type Ev, Harness } from "./harness.js";
import { LineModel } from "./model.js";

const LINES = Number(process.env.USAGE_CRASH_LINES ?? 300);
const SECONDS = Number(process.env.USAGE_CRASH_SECONDS ?? 30);

describe("usage counting under SIGKILL", () => {
  const h = new Harness("standalone");
  before(() => h.start({ pipeline: false }));
  after(() => h.stop());

  it("keeps exact totals and loses no alert when the aggregator and the relay die at random moments", async () => {
    const env = (components: string) => ({
      USAGE_PORT: "0",
      USAGE_COMPONENTS: components,
      REDIS_URL: TEST_REDIS_URL,
      KAFKA_BROKERS: KAFKA_BROKERS.join(","),
      USAGE_EVENTS_TOPIC: h.topics.usage,
      DOMAIN_EVENTS_TOPIC: h.topics.domain,
      NOTIFICATION_TOPIC: h.topics.notifications,
      USAGE_GROUP_PREFIX: h.groupPrefix,
      USAGE_RELAY_SWEEP_MS: "200",
      USAGE_MONTH_GRACE_DAYS: "40",
      USAGE_CONSUMER_CONCURRENCY: "2",
      // A killed member holds its partitions until its session times out: the broker's minimum.
      USAGE_KAFKA_SESSION_TIMEOUT_MS: "6000",
      DRAIN_DELAY_MS: "0",
      LOG_LEVEL: "warn",
      ...AUTH_ENV,
    });
    const procs: Record<"aggregator" | "relay", UnitProcess | undefined> = { aggregator: undefined, relay: undefined };
    const startProc = async (which: "aggregator" | "relay") => {
      const p = spawnUnit("usage", { ...env(which), LOG_LEVEL: "info" });
      procs[which] = p;
      await waitForLog(p, /unit listening/, 30_000);
    };
    await Promise.all([startProc("aggregator"), startProc("relay")]);

    const month = h.store.clock.monthOf(Date.now());
    const lines = Array.from({ length: LINES }, (_, i) => unique(`crash${i}`));
    const models = lines.map((l) => new LineModel(l));
    // Each line will get about 40 events of ≤ 4 KB; quotas so that lines cross their levels at
    // different moments of the run (some never reach 100 %).
    const quotas = lines.map((_, i) => 20_000 + ((i * 7919) % 120_000));
    await h.store.setQuotas(
      lines.map((sid, i) => ({
        sid,
        mode: "plan" as const,
        lineSequence: 1n,
        quotaBytes: BigInt(quotas[i] as number),
      })),
    );
    for (const [i, m] of models.entries()) m.setQuota(quotas[i] as number);

    let kills = 0;
    let events = 0;
    let producing = true;
    const seqs = new Array<number>(LINES).fill(0);
    const producer = (async () => {
      const started = Date.now();
      let tick = 0;
      while (Date.now() - started < SECONDS * 1000) {
        const records: Ev[][] = [];
        for (let i = 0; i < LINES; i++) {
          if ((i + tick) % 8 !== 0) continue;
          const seq = (seqs[i] as number) + 1;
          seqs[i] = seq;
          const e: Ev = {
            line: lines[i] as string,
            seq,
            bytes: 1 + ((seq * 2654435761 + i) % 4096),
            atMs: Date.now() - 500,
          };
          records.push([e]);
          (models[i] as LineModel).event(month.label, e.seq, e.bytes);
          events += 1;
          // A producer retry now and then: the same event twice.
          if (seq % 11 === 0) records.push([e]);
        }
        await h.send(records);
        tick += 1;
        await sleep(100);
      }
      producing = false;
    })();

    // Kills at random moments: while a process starts, consumes, counts or publishes. A victim is
    // restarted at once (without waiting for it to be ready), so the next kill may find it
    // anywhere in its start-up too.
    const killer = (async () => {
      await sleep(1_500);
      while (producing) {
        const r = Math.random();
        const victims: ("aggregator" | "relay")[] =
          r < 0.4 ? ["aggregator"] : r < 0.75 ? ["relay"] : ["aggregator", "relay"];
        for (const v of victims) {
          const p = procs[v];
          p?.child.kill("SIGKILL");
          if (p) await p.exited;
          kills += 1;
        }
        await sleep(Math.random() * 300);
        for (const v of victims) procs[v] = spawnUnit("usage", { ...env(v), LOG_LEVEL: "info" });
        await sleep(500 + Math.random() * 2_500);
      }
    })();
    await Promise.all([producer, killer]);

    try {
      await h.idle(120_000);
      for (const m of models) {
        const got = await h.store.get(m.line, month);
        assert.equal(got.usedBytes, BigInt(m.months.get(month.label)?.used ?? 0), `${m.line} total`);
        assert.deepEqual(got.alertedLevels, m.levels(month.label), `${m.line} levels`);
      }
      const mine = new Set(lines);
      const received = h.received.filter((r) => mine.has(r.key)).map((r) => r.requestId);
      const distinct = new Set(received);
      const expected = models.flatMap((m) => m.alerts);
      assert.deepEqual([...distinct].sort(), [...expected].sort(), "every expected alert, no other");
      process.stdout.write(
        `# crash test: ${events} events (+duplicates) on ${LINES} lines in ${SECONDS} s, ${kills} SIGKILLs, ` +
          `${expected.length} alerts expected, ${distinct.size} distinct received, ${received.length - distinct.size} re-published by a relay killed between the broker's ack and its cleanup\n`,
      );
      assert.ok(kills >= 10, `at least 10 kills (got ${kills})`);
    } finally {
      for (const p of Object.values(procs)) {
        p?.child.kill("SIGTERM");
        if (p) await p.exited;
      }
    }
  });
});
