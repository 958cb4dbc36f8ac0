/**
 * Every usage process may run a relay: two relays sweeping the same outboxes publish each alert
 * once (one holds an outbox's lease at a time), and nothing stays behind.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { eventually, unique } from "../../../test/support/env.js";
import { OutboxRelay } from "../src/relay.js";
import { Harness } from "./harness.js";

describe("two relays on the same outboxes", () => {
  const h = new Harness("standalone");
  before(() => h.start({ pipeline: false }));
  after(() => h.stop());

  it("publish each alert once", async () => {
    const relays = [0, 1].map(
      () =>
        new OutboxRelay({
          redis: h.redis,
          layout: h.store.layout,
          producer: h.producer,
          logger: h.logger,
          sweepMs: 20,
          topic: h.topics.notifications,
        }),
    );
    for (const r of relays) r.start();
    try {
      const month = h.store.clock.monthOf(Date.now());
      const lines = Array.from({ length: 300 }, (_, i) => unique(`relay${i}`));
      await h.store.setQuotas(lines.map((sid) => ({ sid, mode: "plan" as const, lineSequence: 1n, quotaBytes: 100n })));
      // Each line jumps to 60 %, then to 100 %: two alerts each, spread over the line groups.
      await h.store.apply(lines.map((sid) => ({ sid, seq: 1, bytes: 60, month, traceparent: "" })));
      await h.store.apply(lines.map((sid) => ({ sid, seq: 2, bytes: 40, month, traceparent: "" })));
      const mine = new Set(lines);
      await eventually(
        async () => (h.received.filter((r) => mine.has(r.key)).length >= 600 ? true : undefined),
        30_000,
        "600 alerts",
      );
      await new Promise((r) => setTimeout(r, 500)); // room for any second copy to show up
      const ids = h.received.filter((r) => mine.has(r.key)).map((r) => r.requestId);
      assert.equal(ids.length, 600, `each alert once (${ids.length - new Set(ids).size} copies)`);
      assert.equal(new Set(ids).size, 600);
      const left = await Promise.all(h.store.outboxKeys().map((k) => h.redis.hlen(k)));
      assert.ok(
        left.every((n) => n === 0),
        "the outboxes are empty",
      );
    } finally {
      for (const r of relays) await r.stop();
    }
  });
});
