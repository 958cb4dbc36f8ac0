/**
 * A reader of `telco.usage.v1.UsageEvent` and `UsageEventBatch` for the aggregator's hot path,
 * reading the fields it needs straight from the wire format into plain numbers and strings.
 * The generated `fromBinary` builds a full message (BigInt for every uint64, a Timestamp
 * message per event); at 1M lines that was a third of the aggregator's time and most of its
 * garbage. It reads what `fromBinary` reads — the same values for the same bytes, unknown fields
 * skipped, a repeated scalar's last value, an occurred_at given twice merged, strings refused
 * unless valid UTF-8 — which services/usage/test/wire.test.ts checks against the generated code
 * on random and damaged messages. It is stricter in two ways: a known field sent with another
 * wire type is refused (fromBinary reads it as the field's type whatever the tag says, i.e.
 * garbage), and so is a field that runs past the end of its embedded message (fromBinary reads
 * on into the enclosing one).
 *
 * Numbers are JavaScript numbers: exact up to 2^53; larger varints come out larger than any
 * limit the aggregator accepts (and are refused there), never wrapped into small ones.
 */

export interface WireEvent {
  eventId: string;
  subscriptionId: string;
  seq: number;
  bytes: number;
  /** occurred_at; `hasTime` false when the event has none. */
  seconds: number;
  nanos: number;
  hasTime: boolean;
  /** Where the event's own encoding lies in the record value (a batch event is dead-lettered alone). */
  start: number;
  end: number;
}

export class WireError extends Error {}

const TWO_32 = 2 ** 32;

class Reader {
  pos: number;
  /** The halves of the last varint read, as unsigned 32-bit numbers. */
  private lo = 0;
  private hi = 0;

  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
    /** An embedded message: running past its end is not the buffer's end. */
    private readonly embedded = false,
  ) {
    this.pos = start;
  }

  private eof(): WireError {
    return new WireError(this.embedded ? "premature end of an embedded message" : "premature EOF");
  }

  /** Reads a varint of up to 10 bytes into lo / hi (the bits above 64 dropped, as protobuf does). */
  private varint64(): void {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw this.eof();
      const b = this.buf[this.pos++] as number;
      const bits = b & 0x7f;
      if (i < 4) lo |= bits << (7 * i);
      else if (i === 4) {
        lo |= (bits & 0x0f) << 28;
        hi |= bits >> 4;
      } else hi |= bits << (7 * i - 32);
      if (b < 0x80) {
        this.lo = lo >>> 0;
        this.hi = hi >>> 0;
        return;
      }
    }
    throw new WireError("invalid varint");
  }

  /** uint64 as a number: exact below 2^53. */
  varint(): number {
    this.varint64();
    return this.hi * TWO_32 + this.lo;
  }

  /** int64 (two's complement) as a number. */
  int64(): number {
    this.varint64();
    if (this.hi < 0x80000000) return this.hi * TWO_32 + this.lo;
    const lo = (~this.lo + 1) >>> 0;
    const hi = (~this.hi + (lo === 0 ? 1 : 0)) >>> 0;
    return -(hi * TWO_32 + lo);
  }

  /** uint32: the low 32 bits of the varint (lengths and tags are read so). */
  uint32(): number {
    this.varint64();
    return this.lo;
  }

  /** int32: the low 32 bits, signed. */
  int32(): number {
    this.varint64();
    return this.lo | 0;
  }

  length(): [number, number] {
    const n = this.uint32();
    const start = this.pos;
    const end = start + n;
    if (n > this.end - start) throw this.eof();
    this.pos = end;
    return [start, end];
  }

  skip(wireType: number, field: number): void {
    switch (wireType) {
      case 0:
        // As fromBinary skips a varint: to its last byte, however long.
        for (;;) {
          if (this.pos >= this.end) throw this.eof();
          if (((this.buf[this.pos++] as number) & 0x80) === 0) return;
        }
      case 1:
        this.fixed(8);
        return;
      case 2:
        this.length();
        return;
      case 5:
        this.fixed(4);
        return;
      case 3: {
        // A group: skip to its end-group tag.
        for (;;) {
          const [f, w] = this.tag();
          if (w === 4) {
            if (f !== field) throw new WireError("invalid end group tag");
            return;
          }
          this.skip(w, f);
        }
      }
      default:
        throw new WireError(`cant skip wire type ${wireType}`);
    }
  }

  fixed(n: number): void {
    if (this.end - this.pos < n) throw this.eof();
    this.pos += n;
  }

  tag(): [number, number] {
    const start = this.pos;
    const t = this.uint32();
    const read = this.pos - start;
    if (read > 5 || (read === 5 && (this.buf[this.pos - 1] as number) > 0x0f)) {
      throw new WireError("illegal tag: varint overflows uint32");
    }
    const field = t >>> 3;
    const wire = t & 7;
    if (field <= 0 || wire > 5) throw new WireError(`illegal tag: field no ${field} wire type ${wire}`);
    return [field, wire];
  }

  /** A proto3 string: valid UTF-8 or refused, as fromBinary does. */
  string(start: number, end: number): string {
    const buf = this.buf;
    for (let i = start; i < end; i++) {
      if ((buf[i] as number) > 0x7f) {
        try {
          return strictUtf8.decode(buf.subarray(start, end));
        } catch {
          throw new WireError("invalid UTF-8");
        }
      }
    }
    return buf.toString("latin1", start, end);
  }
}

/** A known field must come with its own wire type. */
function expect(_r: Reader, wire: number, want: number, field: number): boolean {
  if (wire === want) return true;
  throw new WireError(`field ${field} has wire type ${wire}, expected ${want}`);
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function readTimestamp(r: Reader, ev: WireEvent, start: number, end: number): void {
  const t = new Reader(r.buf, start, end, true);
  ev.hasTime = true;
  while (t.pos < t.end) {
    const [f, w] = t.tag();
    if (f === 1 && expect(t, w, 0, f)) ev.seconds = t.int64();
    else if (f === 2 && expect(t, w, 0, f)) ev.nanos = t.int32();
    else t.skip(w, f);
  }
}

/** Reads one UsageEvent from buf[start, end). */
export function readUsageEvent(buf: Buffer, start = 0, end = buf.length): WireEvent {
  const r = new Reader(buf, start, end, start !== 0 || end !== buf.length);
  const ev: WireEvent = {
    eventId: "",
    subscriptionId: "",
    seq: 0,
    bytes: 0,
    seconds: 0,
    nanos: 0,
    hasTime: false,
    start,
    end,
  };
  while (r.pos < r.end) {
    const [f, w] = r.tag();
    switch (f) {
      case 1: {
        expect(r, w, 2, f);
        const [s, e] = r.length();
        ev.eventId = r.string(s, e);
        break;
      }
      case 2: {
        expect(r, w, 2, f);
        const [s, e] = r.length();
        ev.subscriptionId = r.string(s, e);
        break;
      }
      case 3:
        expect(r, w, 0, f);
        ev.seq = r.varint();
        break;
      case 4:
        expect(r, w, 0, f);
        ev.bytes = r.varint();
        break;
      case 5: {
        expect(r, w, 2, f);
        const [s, e] = r.length();
        readTimestamp(r, ev, s, e);
        break;
      }
      case 6: {
        expect(r, w, 2, f);
        const [s, e] = r.length();
        r.string(s, e); // source: not needed for counting, but a string all the same
        break;
      }
      default:
        r.skip(w, f);
    }
  }
  return ev;
}

/** Reads a UsageEventBatch: its events in order. */
export function readUsageEventBatch(buf: Buffer): WireEvent[] {
  const r = new Reader(buf, 0, buf.length);
  const out: WireEvent[] = [];
  while (r.pos < r.end) {
    const [f, w] = r.tag();
    if (f === 1) {
      expect(r, w, 2, f);
      const [s, e] = r.length();
      out.push(readUsageEvent(buf, s, e));
    } else r.skip(w, f);
  }
  return out;
}
