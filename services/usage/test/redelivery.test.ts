/**
 * Redeliveries are exact whatever their size: the aggregator skips the positions of a partition
 * each line group has applied, so a replayed partition counts nothing twice and dead-letters
 * nothing that was counted, even for a line with far more events in the replay than the
 * duplicate window holds; an event dead-lettered as too late is dead-lettered again when
 * replayed (never lost); a topic deleted and made again (offsets from 0) is counted.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { eventually, sleep, unique } from "../../../test/support/env.js";
import { DLQ, headerString } from "../../kit/src/kafka.js";
import { type Ev, Harness } from "./harness.js";

describe("usage.events redelivered", () => {
  const h = new Harness("standalone");
  const dead = h.dead;
  before(async () => {
    await h.start();
    await h.readDeadLetters();
  });
  after(() => h.stop());

  const deadOf = (line: string) => dead.filter((d) => d.key?.toString() === line);

  it("a replay of 150 events of one line, single and batched, counts nothing twice and dead-letters nothing", async () => {
    const single = unique("replay-single");
    const batched = unique("replay-batch");
    const at = Date.now() - 1000;
    const month = h.store.clock.monthOf(at);
    const evs = (line: string) =>
      Array.from({ length: 150 }, (_, i): Ev => ({ line, seq: i + 1, bytes: i + 1, atMs: at }));
    await h.send(evs(single).map((e) => [e]));
    await h.send([evs(batched).slice(0, 75), evs(batched).slice(75)]);
    await h.idle();
    const total = (150 * 151) / 2;
    assert.equal((await h.store.get(single, month)).usedBytes, BigInt(total));
    assert.equal((await h.store.get(batched, month)).usedBytes, BigInt(total));

    await h.redeliver([h.partitionOf(single), h.partitionOf(batched)], "0");
    await h.idle();
    assert.equal((await h.store.get(single, month)).usedBytes, BigInt(total), "single-event records");
    assert.equal((await h.store.get(batched, month)).usedBytes, BigInt(total), "batch records");
    const stats = h.pipeline?.aggregator.stats;
    assert.ok((stats?.replayed ?? 0) >= 300, `all 300 events seen again and skipped (${stats?.replayed})`);
    assert.equal(stats?.counted, 0, "nothing counted again");
    await sleep(1_000);
    assert.deepEqual(deadOf(single), [], "nothing of a replay is dead-lettered");
    assert.deepEqual(deadOf(batched), []);
  });

  it("an event dead-lettered as too late is dead-lettered again when its partition is replayed", async () => {
    const line = unique("late");
    const at = Date.now() - 1000;
    const month = h.store.clock.monthOf(at);
    await h.send([[{ line, seq: 100, bytes: 10, atMs: at }], [{ line, seq: 9, bytes: 5, atMs: at }]]);
    await h.idle();
    await eventually(async () => (deadOf(line).length === 1 ? true : undefined), 20_000, "one dead letter");
    await h.redeliver(h.partitionOf(line), "0");
    await h.idle();
    const again = await eventually(
      async () => (deadOf(line).length >= 2 ? deadOf(line) : undefined),
      20_000,
      "the dead letter again",
    );
    for (const d of again) {
      assert.match(headerString(d.headers, DLQ.reason) ?? "", /seq 9 is more than 52 behind/);
    }
    assert.equal((await h.store.get(line, month)).usedBytes, 10n, "the late event never counts");
  });

  it("counts a topic deleted and made again, whose offsets start at 0 again", async () => {
    const line = unique("reborn");
    const at = Date.now() - 1000;
    const month = h.store.clock.monthOf(at);
    await h.send(Array.from({ length: 20 }, (_, i) => [{ line, seq: i + 1, bytes: 1, atMs: at }]));
    await h.idle();
    assert.equal((await h.store.get(line, month)).usedBytes, 20n);
    await h.pipeline?.stop();
    h.pipeline = undefined;
    await h.admin.deleteTopics({ topics: [h.topics.usage] });
    await eventually(
      async () => {
        try {
          const made = await h.admin.createTopics({
            waitForLeaders: true,
            topics: [{ topic: h.topics.usage, numPartitions: h.partitions, replicationFactor: 1 }],
          });
          return made ? true : undefined;
        } catch {
          return undefined; // still being deleted
        }
      },
      30_000,
      "the topic to be made again",
    );
    // New events of the line land at offsets the old topic's positions already cover.
    await h.send(Array.from({ length: 5 }, (_, i) => [{ line, seq: 21 + i, bytes: 100, atMs: Date.now() - 500 }]));
    await h.startPipeline();
    await h.idle();
    assert.equal((await h.store.get(line, month)).usedBytes, 520n);
  });
});
