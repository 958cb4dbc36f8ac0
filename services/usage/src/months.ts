/**
 * Months in the carrier's time zone. An event's month is that of its occurrence time there; a
 * month's counters expire at its end (the start of the next month there) plus a grace period.
 *
 * Boundaries are computed exactly with Intl (any IANA zone, DST included) once per month and
 * cached, so attributing an event costs two comparisons, not a date formatting.
 */
export interface Month {
  /** "YYYY-MM". */
  label: string;
  /** YYYYMM as a number, e.g. 202611: comparable. */
  num: number;
  /** First instant of the month in the zone (ms since the epoch). */
  startMs: number;
  /** First instant of the next month (ms). */
  endMs: number;
}

const pad = (n: number) => String(n).padStart(2, "0");

export class MonthClock {
  private readonly parts: Intl.DateTimeFormat;
  private readonly cache = new Map<number, Month>();
  /** The last month looked up: most events of a batch fall in it. */
  private last: Month | undefined;

  constructor(readonly timeZone: string) {
    this.parts = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
  }

  /** The month that contains the instant `ms`. */
  monthOf(ms: number): Month {
    const l = this.last;
    if (l && ms >= l.startMs && ms < l.endMs) return l;
    const f = this.fields(ms);
    const m = this.month(f.year, f.month);
    this.last = m;
    return m;
  }

  /** The month "YYYY-MM" (throws on a malformed label; callers validate first). */
  parse(label: string): Month {
    const [y, m] = label.split("-").map(Number);
    if (!y || !m || m < 1 || m > 12) throw new Error(`not a month: ${label}`);
    return this.month(y, m);
  }

  /** The month `delta` months after (or before) `m`. */
  shift(m: Month, delta: number): Month {
    const idx = Math.floor(m.num / 100) * 12 + (m.num % 100) - 1 + delta;
    return this.month(Math.floor(idx / 12), (idx % 12) + 1);
  }

  month(year: number, month: number): Month {
    const num = year * 100 + month;
    let m = this.cache.get(num);
    if (!m) {
      const next = month === 12 ? [year + 1, 1] : [year, month + 1];
      m = {
        label: `${year}-${pad(month)}`,
        num,
        startMs: this.localMidnight(year, month),
        endMs: this.localMidnight(next[0] as number, next[1] as number),
      };
      this.cache.set(num, m);
    }
    return m;
  }

  /** The instant of 00:00 on the first of the month in the zone. */
  private localMidnight(year: number, month: number): number {
    // Start from that wall time read as UTC, then correct by the zone's offset (twice: the offset
    // at the first guess may differ across a DST change).
    const wall = Date.UTC(year, month - 1, 1);
    let t = wall;
    for (let i = 0; i < 3; i++) {
      const f = this.fields(t);
      const seen = Date.UTC(f.year, f.month - 1, f.day, f.hour, f.minute, f.second);
      const next = t + (wall - seen);
      if (next === t) break;
      t = next;
    }
    return t;
  }

  private fields(ms: number) {
    const out = { year: 0, month: 0, day: 0, hour: 0, minute: 0, second: 0 };
    for (const p of this.parts.formatToParts(new Date(ms))) {
      if (p.type in out) out[p.type as keyof typeof out] = Number(p.value);
    }
    return out;
  }
}
