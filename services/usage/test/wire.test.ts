/**
 * The aggregator's own reader of UsageEvent / UsageEventBatch (src/wire.ts) against the
 * generated code: for random messages — unknown fields, fields repeated, numbers up to 2^64,
 * Korean and emoji strings — it reads exactly what fromBinary reads; whatever bytes it is given it
 * either reads them or refuses them with a WireError, and it refuses what fromBinary refuses.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import { UsageEventBatchSchema, UsageEventSchema } from "../../../gen/telco/usage/v1/events_pb.js";
import { readUsageEvent, readUsageEventBatch, WireError } from "../src/wire.js";

const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const eventArb = fc.record({
  eventId: fc.string({ unit: "grapheme", maxLength: 20 }),
  subscriptionId: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom("L0000000001", "홍길동", "📱x")),
  seq: fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 53n }), u64),
  bytes: fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 40n }), u64),
  occurredAt: fc.option(
    fc.record({
      seconds: fc.bigInt({ min: -(2n ** 40n), max: 2n ** 40n }),
      nanos: fc.integer({ min: 0, max: 999_999_999 }),
    }),
    { nil: undefined },
  ),
  source: fc.string({ maxLength: 10 }),
});

/** Unknown fields (numbers 7..40) of every wire type, appended to a valid encoding. */
const unknownArb = fc.array(
  fc.record({
    no: fc.integer({ min: 7, max: 40 }),
    kind: fc.constantFrom("varint", "fixed32", "fixed64", "bytes"),
    n: fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }),
  }),
  { maxLength: 4 },
);

function withUnknown(bytes: Uint8Array, unknown: { no: number; kind: string; n: bigint }[]): Uint8Array {
  const w = new BinaryWriter();
  w.raw(bytes);
  for (const u of unknown) {
    if (u.kind === "varint") w.tag(u.no, 0).uint64(u.n);
    else if (u.kind === "fixed32") w.tag(u.no, 5).fixed32(Number(u.n % 2n ** 32n));
    else if (u.kind === "fixed64") w.tag(u.no, 1).fixed64(u.n);
    else w.tag(u.no, 2).bytes(new Uint8Array(Number(u.n % 7n)));
  }
  return w.finish();
}

/** What the aggregator needs of a generated message, as numbers (inexact above 2^53 on both sides alike). */
function expected(m: ReturnType<typeof fromBinary<typeof UsageEventSchema>>) {
  return {
    eventId: m.eventId,
    subscriptionId: m.subscriptionId,
    seq: Number(m.seq),
    bytes: Number(m.bytes),
    hasTime: m.occurredAt !== undefined,
    seconds: Number(m.occurredAt?.seconds ?? 0n),
    nanos: m.occurredAt?.nanos ?? 0,
  };
}
const got = (e: ReturnType<typeof readUsageEvent>) => ({
  eventId: e.eventId,
  subscriptionId: e.subscriptionId,
  seq: e.seq,
  bytes: e.bytes,
  hasTime: e.hasTime,
  seconds: e.seconds,
  nanos: e.nanos,
});

describe("the aggregator's UsageEvent reader", () => {
  it("reads what fromBinary reads, unknown fields skipped", () => {
    fc.assert(
      fc.property(eventArb, unknownArb, (init, unknown) => {
        const bytes = Buffer.from(withUnknown(toBinary(UsageEventSchema, create(UsageEventSchema, init)), unknown));
        assert.deepEqual(got(readUsageEvent(bytes)), expected(fromBinary(UsageEventSchema, bytes)));
      }),
      { numRuns: 2_000 },
    );
  });

  it("takes a field's last value and merges an occurred_at given twice, as fromBinary does", () => {
    fc.assert(
      fc.property(eventArb, eventArb, (a, b) => {
        const bytes = Buffer.concat([
          toBinary(UsageEventSchema, create(UsageEventSchema, a)),
          toBinary(UsageEventSchema, create(UsageEventSchema, b)),
        ]);
        assert.deepEqual(got(readUsageEvent(bytes)), expected(fromBinary(UsageEventSchema, bytes)));
      }),
      { numRuns: 1_000 },
    );
  });

  it("reads batches event by event, each with the bytes of its own encoding", () => {
    fc.assert(
      fc.property(fc.array(eventArb, { maxLength: 8 }), unknownArb, (events, unknown) => {
        const batch = create(UsageEventBatchSchema, { events: events.map((e) => create(UsageEventSchema, e)) });
        const bytes = Buffer.from(withUnknown(toBinary(UsageEventBatchSchema, batch), unknown));
        const mine = readUsageEventBatch(bytes);
        const theirs = fromBinary(UsageEventBatchSchema, bytes).events;
        assert.equal(mine.length, theirs.length);
        for (const [i, e] of mine.entries()) {
          assert.deepEqual(got(e), expected(theirs[i] as (typeof theirs)[number]));
          // Its slice is a UsageEvent on its own (what a dead letter of that event carries).
          assert.deepEqual(
            expected(fromBinary(UsageEventSchema, bytes.subarray(e.start, e.end))),
            expected(theirs[i] as (typeof theirs)[number]),
          );
        }
      }),
      { numRuns: 1_000 },
    );
  });

  it("reads or refuses any bytes with a WireError, and refuses whatever fromBinary refuses", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 60 }), (raw) => {
        const bytes = Buffer.from(raw);
        let generated = true;
        try {
          fromBinary(UsageEventSchema, bytes);
        } catch {
          generated = false;
        }
        try {
          readUsageEvent(bytes);
        } catch (e) {
          assert.ok(e instanceof WireError, `not a WireError: ${(e as Error).stack}`);
          return;
        }
        assert.ok(generated, "read bytes that fromBinary refuses");
      }),
      { numRuns: Number(process.env.WIRE_RUNS ?? 5_000) },
    );
  });

  it("on damaged encodings, agrees with fromBinary: the same values, or both refuse", () => {
    fc.assert(
      fc.property(
        eventArb,
        fc.array(fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 3 }),
        (init, damage) => {
          const bytes = Buffer.from(toBinary(UsageEventSchema, create(UsageEventSchema, init)));
          if (bytes.length === 0) return;
          for (const d of damage) bytes[d.at % bytes.length] = d.byte;
          let theirs: ReturnType<typeof expected> | undefined;
          try {
            theirs = expected(fromBinary(UsageEventSchema, bytes));
          } catch {
            theirs = undefined;
          }
          let mine: ReturnType<typeof got> | undefined;
          try {
            mine = got(readUsageEvent(bytes));
          } catch (e) {
            assert.ok(e instanceof WireError);
            // Stricter on purpose in two cases only: a known field with another wire type, a field
            // running past the end of its embedded message.
            if (theirs !== undefined) {
              assert.match((e as Error).message, /has wire type \d, expected|premature end of an embedded message/);
            }
            return;
          }
          assert.deepEqual(mine, theirs);
        },
      ),
      { numRuns: Number(process.env.WIRE_RUNS ?? 5_000) },
    );
  });

  it("refuses strings that are not UTF-8 and a known field with another wire type", () => {
    const bad = Buffer.from([0x12, 0x02, 0xc3, 0x28]); // subscription_id: an invalid UTF-8 sequence
    assert.throws(() => fromBinary(UsageEventSchema, bad));
    assert.throws(() => readUsageEvent(bad), /invalid UTF-8/);
    const wrongType = Buffer.from([0x18 | 0x02, 0x01, 0x05]); // seq (field 3) as a length-delimited field
    assert.throws(() => readUsageEvent(wrongType), /field 3 has wire type 2, expected 0/);
  });
});
