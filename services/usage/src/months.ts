import { ZonedTime } from "../../kit/src/zoned-time.js";

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
  private readonly zone: ZonedTime;
  private readonly cache = new Map<number, Month>();
  /** The last month looked up: most events of a batch fall in it. */
  private last: Month | undefined;

  constructor(readonly timeZone: string) {
    this.zone = new ZonedTime(timeZone);
  }

  /** The month that contains the instant `ms`. */
  monthOf(ms: number): Month {
    const l = this.last;
    if (l && ms >= l.startMs && ms < l.endMs) return l;
    const f = this.zone.fields(ms);
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
    return this.zone.instant(year, month, 1);
  }
}
