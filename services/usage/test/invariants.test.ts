/**
 * Invariants 1–3 of DESIGN.md through the real path — Kafka → aggregator → Redis → outbox relay →
 * Kafka — checked exactly against a reference model, on a single Redis and on a 3-master Redis
 * Cluster: totals equal the sum of distinct events per line and month (Asia/Seoul months); each
 * (line, month, level) alerted exactly once, the highest level only on a jump; quota changes
 * re-evaluate; unknown quotas count and are evaluated when they arrive; unlimited plans never alert.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { unique } from "../../../test/support/env.js";
import type { Month } from "../src/months.js";
import { type Ev, Harness, type RedisKind } from "./harness.js";
import { LineModel } from "./model.js";

const RUNS = Number(process.env.USAGE_PROPERTY_RUNS ?? 8);
const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

interface LineSpec {
  quota: number;
  knownFromStart: boolean;
  newQuota: number | undefined;
  events: { bytes: number; prev: boolean }[];
  swaps: number[];
  dups: { at: number; back: number }[];
  batchSizes: number[];
}

const lineArb: fc.Arbitrary<LineSpec> = fc.record({
  quota: fc.oneof(
    { weight: 1, arbitrary: fc.constant(0) },
    { weight: 5, arbitrary: fc.integer({ min: 2_000, max: 60_000 }) },
  ),
  knownFromStart: fc.boolean(),
  newQuota: fc.option(fc.integer({ min: 1_000, max: 80_000 }), { nil: undefined }),
  events: fc.array(fc.record({ bytes: fc.integer({ min: 1, max: 9_000 }), prev: fc.boolean() }), {
    minLength: 1,
    maxLength: 30,
  }),
  swaps: fc.array(fc.nat(60), { maxLength: 12 }),
  dups: fc.array(fc.record({ at: fc.nat(60), back: fc.nat(15) }), { maxLength: 10 }),
  batchSizes: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 8 }),
});

const scenarioArb = fc.record({
  lines: fc.array(lineArb, { minLength: 1, maxLength: 4 }),
  splitPercent: fc.integer({ min: 0, max: 100 }),
  rewind: fc.boolean(),
});

/** A line's sends in the order its network element (and the producer's retries) emit them. */
function sendsOf(line: string, spec: LineSpec, cur: Month): Ev[] {
  const evs: Ev[] = spec.events.map((e, i) => ({
    line,
    seq: i + 1,
    bytes: e.bytes,
    // Around the first instant of the month in Asia/Seoul, on both sides, the instant included.
    atMs: e.prev ? cur.startMs - 1 - (e.bytes % 5_000) : cur.startMs + (e.bytes % 5_000),
  }));
  for (const s of spec.swaps) {
    const i = s % evs.length;
    if (i + 1 < evs.length) [evs[i], evs[i + 1]] = [evs[i + 1] as Ev, evs[i] as Ev];
  }
  for (const d of spec.dups) {
    const i = d.at % evs.length;
    evs.splice(Math.min(evs.length, i + 1 + d.back), 0, { ...(evs[i] as Ev) });
  }
  return evs;
}

/** Records of several lines: each line's sends cut into batches, lines interleaved. */
function interleave(perLine: { evs: Ev[]; sizes: number[] }[]): Ev[][] {
  const queues = perLine.map(({ evs, sizes }) => {
    const out: Ev[][] = [];
    for (let i = 0, k = 0; i < evs.length; k++) {
      const n = sizes[k % sizes.length] as number;
      out.push(evs.slice(i, i + n));
      i += n;
    }
    return out;
  });
  const records: Ev[][] = [];
  for (let round = 0; queues.some((q) => q.length > round); round++) {
    for (const q of queues) if (q[round]) records.push(q[round] as Ev[]);
  }
  return records;
}

for (const kind of ["standalone", "cluster"] as RedisKind[]) {
  describe(`usage invariants on ${kind === "cluster" ? "a 3-master Redis Cluster" : "a single Redis"}`, () => {
    const h = new Harness(kind);
    before(() => h.start());
    after(() => h.stop());

    const cur = () => h.store.clock.monthOf(Date.now());
    const prev = () => h.store.clock.shift(cur(), -1);

    async function expectState(models: LineModel[]): Promise<void> {
      for (const m of models) {
        for (const month of [prev(), cur()]) {
          const got = await h.store.get(m.line, month);
          const want = m.months.get(month.label);
          assert.equal(got.usedBytes, BigInt(want?.used ?? 0), `${m.line} ${month.label} used`);
          assert.deepEqual(got.alertedLevels, m.levels(month.label), `${m.line} ${month.label} levels`);
        }
      }
      const lines = new Set(models.map((m) => m.line));
      const got = h.received.filter((r) => lines.has(r.key)).map((r) => r.requestId);
      assert.deepEqual([...got].sort(), models.flatMap((m) => m.alerts).sort(), "alerts: each exactly once");
    }

    it("property: exact totals and exactly-once alerts for random streams", async () => {
      let run = 0;
      await fc.assert(
        fc.asyncProperty(scenarioArb, async (sc) => {
          run += 1;
          const month = cur();
          const lines = sc.lines.map((_, i) => unique(`p${run}-${i}`));
          const models = lines.map((l) => new LineModel(l));
          const sends = sc.lines.map((spec, i) => sendsOf(lines[i] as string, spec, month));
          // Quotas known from the start arrive before any usage.
          for (const [i, spec] of sc.lines.entries()) {
            if (!spec.knownFromStart) continue;
            await h.domainEvent(lines[i] as string, 1, {
              case: "lineActivated",
              value: { customerId: "c", planId: "p", quotaBytes: BigInt(spec.quota) },
            });
            models[i]?.setQuota(spec.quota);
          }
          await h.idle();
          const phases = sends.map((s) => {
            const cut = Math.round((s.length * sc.splitPercent) / 100);
            return [s.slice(0, cut), s.slice(cut)];
          });
          for (const phase of [0, 1]) {
            const records = interleave(
              phases.map((p, i) => ({ evs: p[phase] as Ev[], sizes: sc.lines[i]?.batchSizes ?? [1] })),
            );
            await h.send(records, phase === 1 ? TRACEPARENT : undefined);
            for (const [i, m] of models.entries()) {
              for (const e of phases[i]?.[phase] ?? []) m.event(h.store.clock.monthOf(e.atMs).label, e.seq, e.bytes);
            }
            await h.idle();
            if (phase === 1) break;
            // Between the phases: quotas not known yet arrive, and plan changes happen mid-month.
            for (const [i, spec] of sc.lines.entries()) {
              const line = lines[i] as string;
              if (!spec.knownFromStart) {
                await h.domainEvent(line, 1, {
                  case: "lineActivated",
                  value: { customerId: "c", planId: "p", quotaBytes: BigInt(spec.quota) },
                });
                models[i]?.setQuota(spec.quota);
              }
              if (spec.newQuota !== undefined) {
                await h.domainEvent(line, 2, {
                  case: "planChanged",
                  value: {
                    oldPlanId: "p",
                    newPlanId: "q",
                    quotaBytes: BigInt(spec.newQuota),
                    effectiveFrom: timestampFromMs(Date.now()),
                  },
                });
                // From this month on: last month keeps the quota it had.
                models[i]?.setQuota(spec.newQuota, month.label);
              }
            }
            await h.idle();
          }
          if (sc.rewind) {
            // A consumer redelivery: the group reads the first line's partition again from the start.
            await h.redeliver(h.partitionOf(lines[0] as string), "0");
            await h.idle();
          }
          await expectState(models);
        }),
        { numRuns: RUNS, endOnFailure: true },
      );
      // Every alert carries W3C trace context: the crossing event's, or a fresh one when it had none.
      assert.ok(h.received.every((r) => /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/.test(r.traceparent ?? "")));
    });

    it("a jump from 40 % to 90 % sends the 80 % alert; 50 % is done and never sent later", async () => {
      const line = unique("jump");
      const m = new LineModel(line);
      await h.domainEvent(line, 1, { case: "lineActivated", value: { quotaBytes: 1000n } });
      m.setQuota(1000);
      await h.idle();
      const at = Date.now() - 1000;
      const label = h.store.clock.monthOf(at).label;
      await h.send([[{ line, seq: 1, bytes: 400, atMs: at }]]);
      await h.send([[{ line, seq: 2, bytes: 500, atMs: at }]], TRACEPARENT);
      await h.send([[{ line, seq: 3, bytes: 50, atMs: at }]]);
      await h.send([[{ line, seq: 4, bytes: 50, atMs: at }]]);
      for (const [seq, bytes] of [
        [1, 400],
        [2, 500],
        [3, 50],
        [4, 50],
      ] as const)
        m.event(label, seq, bytes);
      await h.idle();
      assert.deepEqual(m.alerts, [`usage-threshold:${line}:${label}:80`, `usage-threshold:${line}:${label}:100`]);
      await expectState([m]);
      const eighty = h.received.find((r) => r.requestId.endsWith(`${line}:${label}:80`));
      assert.equal(eighty?.traceparent, TRACEPARENT, "the alert carries the trace of the event that crossed");
    });

    it("an unlimited plan never alerts; a plan for next month applies from next month only", async () => {
      const line = unique("unlimited");
      await h.domainEvent(line, 1, { case: "lineActivated", value: { quotaBytes: 0n } });
      const next = h.store.clock.shift(cur(), 1);
      await h.domainEvent(line, 2, {
        case: "planChanged",
        value: { newPlanId: "small", quotaBytes: 100n, effectiveFrom: timestampFromMs(next.startMs) },
      });
      await h.idle();
      await h.send([[{ line, seq: 1, bytes: 10_000, atMs: Date.now() - 1000 }]]);
      await h.idle();
      const now = await h.store.get(line, cur());
      assert.equal(now.usedBytes, 10_000n);
      assert.equal(now.quotaBytes, 0n, "unlimited this month");
      assert.deepEqual(now.alertedLevels, []);
      assert.equal((await h.store.get(line, next)).quotaBytes, 100n, "the new plan's quota from next month");
      assert.equal(h.received.filter((r) => r.key === line).length, 0);
    });

    it("a terminated line stops alerting; stale redeliveries of domain events change nothing", async () => {
      const line = unique("term");
      await h.domainEvent(line, 1, { case: "lineActivated", value: { quotaBytes: 1000n } });
      await h.domainEvent(line, 3, { case: "lineTerminated", value: {} });
      // An older event delivered again after the newer one: ignored by its line sequence.
      await h.domainEvent(line, 2, {
        case: "planChanged",
        value: { quotaBytes: 10n, effectiveFrom: timestampFromMs(Date.now()) },
      });
      await h.idle();
      await h.send([[{ line, seq: 1, bytes: 5000, atMs: Date.now() - 1000 }]]);
      await h.idle();
      const got = await h.store.get(line, cur());
      assert.equal(got.usedBytes, 5000n, "late usage of a terminated line still counts");
      assert.equal(got.terminated, true);
      assert.equal(h.received.filter((r) => r.key === line).length, 0);
    });
  });
}
