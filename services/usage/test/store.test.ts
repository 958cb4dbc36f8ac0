/**
 * The counting store's order of calls for one line group and partition: after a call fails, a
 * later batch of the partition may not be applied before the failed one is read again (its
 * position would make Redis skip the failed events as redeliveries); the failed one, read again,
 * is applied and the later one after it; and a failed call whose events a rebalance's new owner
 * applied since holds nothing back.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { TEST_REDIS_URL, testLogger, unique } from "../../../test/support/env.js";
import { usageStore } from "../../../test/support/usage.js";
import { clientReady, createRedisClient, type RedisClient } from "../../kit/src/redis.js";
import type { UsageInput, UsageStore } from "../src/redis/store.js";

describe("the counting store after a failed call", () => {
  let redis: RedisClient;
  let store: UsageStore;
  before(async () => {
    redis = createRedisClient(TEST_REDIS_URL, [], testLogger("store-test"), "store-test");
    await clientReady(redis, "test redis");
    store = usageStore(redis);
  });
  after(() => redis.disconnect());

  const month = () => store.clock.monthOf(Date.now());
  const ev = (sid: string, seq: number, bytes: number, offset: number): UsageInput => ({
    sid,
    seq,
    bytes,
    month: month(),
    traceparent: "",
    pos: { offset, index: 0, ts: Date.now() },
  });

  it("holds later batches back until the failed one is applied, then applies both once", async () => {
    const line = unique("stuck");
    const source = `${unique("t")}|0`;
    // A call the script refuses (0 bytes passes no check of the store, but fails in Redis).
    await assert.rejects(store.apply([ev(line, 1, 100, 10), ev(line, 2, 0, 11)], source), /bad event/);
    await assert.rejects(store.apply([ev(line, 3, 300, 12)], source), /failed; waiting for it to be read again/);
    assert.equal((await store.get(line, month())).usedBytes, 0n, "nothing of the failed or the held call counted");
    // The failed batch read again (its bad event dead-lettered by the aggregator meanwhile).
    const again = await store.apply([ev(line, 1, 100, 10)], source);
    assert.equal(again.counted, 1);
    const later = await store.apply([ev(line, 3, 300, 12)], source);
    assert.equal(later.counted, 1);
    assert.equal((await store.get(line, month())).usedBytes, 400n);
  });

  describe("quotas by month", () => {
    // A clock of our own: late November, then early December (November still open, in its grace).
    let nowMs = 0;
    const at = (iso: string) => {
      nowMs = Date.parse(iso);
    };
    let s: UsageStore;
    before(() => {
      s = usageStore(redis, { now: () => nowMs });
    });
    const nov = () => s.clock.month(2026, 11);
    const dec = () => s.clock.month(2026, 12);
    const jan = () => s.clock.month(2027, 1);
    const quotaIn = async (line: string, m: ReturnType<typeof nov>) => (await s.get(line, m)).quotaBytes;
    const alertsOf = async (line: string) =>
      (await redis.hkeys(s.layout.outboxKey(s.layout.group(s.layout.bucket(line)))))
        .filter((k) => k.includes(line))
        .sort();
    const use = (line: string, seq: number, bytes: number, m: ReturnType<typeof nov>) =>
      s.apply([{ sid: line, seq, bytes, month: m, traceparent: "" }]);

    it("a plan changed this month leaves last month's quota and alerts alone", async () => {
      const line = unique("q-prev");
      at("2026-11-20T03:00:00Z");
      await s.setQuotas([{ sid: line, mode: "plan", lineSequence: 1n, quotaBytes: 5000n, from: nov() }]);
      await use(line, 1, 3500, nov());
      assert.deepEqual(await alertsOf(line), [`usage-threshold:${line}:2026-11:50`]);
      at("2026-12-03T03:00:00Z");
      await s.setQuotas([{ sid: line, mode: "plan", lineSequence: 2n, quotaBytes: 2000n, from: dec() }]);
      assert.equal(await quotaIn(line, nov()), 5000n, "November keeps its plan");
      assert.equal(await quotaIn(line, dec()), 2000n);
      assert.deepEqual((await s.get(line, nov())).alertedLevels, [50]);
      assert.deepEqual(await alertsOf(line), [`usage-threshold:${line}:2026-11:50`], "no November alert in December");
      // A late November report still counts against November's plan.
      await use(line, 2, 600, nov());
      assert.deepEqual(await alertsOf(line), [
        `usage-threshold:${line}:2026-11:50`,
        `usage-threshold:${line}:2026-11:80`,
      ]);
    });

    it("a plan made for next month takes effect then and is not undone by the next one", async () => {
      const line = unique("q-next");
      at("2026-11-20T03:00:00Z");
      await s.setQuotas([{ sid: line, mode: "plan", lineSequence: 1n, quotaBytes: 5000n, from: nov() }]);
      await s.setQuotas([{ sid: line, mode: "plan", lineSequence: 2n, quotaBytes: 10_000n, from: dec() }]);
      assert.equal(await quotaIn(line, nov()), 5000n);
      assert.equal(await quotaIn(line, dec()), 10_000n);
      at("2026-12-03T03:00:00Z");
      await s.setQuotas([{ sid: line, mode: "plan", lineSequence: 3n, quotaBytes: 20_000n, from: jan() }]);
      assert.equal(await quotaIn(line, dec()), 10_000n, "December keeps the plan made for it");
      assert.equal(await quotaIn(line, jan()), 20_000n);
      assert.equal(await quotaIn(line, nov()), 5000n);
    });

    it("an operator's override holds over a reload of the same plan, and yields to a new plan", async () => {
      const line = unique("q-override");
      at("2026-11-20T03:00:00Z");
      await s.setQuotas([{ sid: line, mode: "plan", lineSequence: 1n, quotaBytes: 5000n, from: nov() }]);
      await s.setQuotas([{ sid: line, mode: "plan", lineSequence: 2n, quotaBytes: 10_000n, from: dec() }]);
      at("2026-12-03T03:00:00Z");
      await s.setQuotas([{ sid: line, mode: "override", lineSequence: 0n, quotaBytes: 7000n }]);
      assert.equal(await quotaIn(line, dec()), 7000n, "the override applies though a plan took effect this month");
      await s.setQuotas([{ sid: line, mode: "snapshot", lineSequence: 2n, quotaBytes: 10_000n }]);
      assert.equal(await quotaIn(line, dec()), 7000n, "a reload of the same plan keeps the override");
      await s.setQuotas([{ sid: line, mode: "plan", lineSequence: 3n, quotaBytes: 30_000n, from: dec() }]);
      assert.equal(await quotaIn(line, dec()), 30_000n, "a new plan replaces it");
    });
  });

  it("lets later batches through when another member has applied the failed one since", async () => {
    const line = unique("moved");
    const source = `${unique("t")}|0`;
    await assert.rejects(store.apply([ev(line, 1, 0, 20)], source), /bad event/);
    // The partition's next owner read the batch again and got past it.
    const other = usageStore(redis);
    assert.equal((await other.apply([ev(line, 1, 50, 20), ev(line, 2, 60, 21)], source)).counted, 2);
    const r = await store.apply([ev(line, 3, 70, 22)], source);
    assert.equal(r.counted, 1);
    assert.equal((await store.get(line, month())).usedBytes, 180n);
  });
});
