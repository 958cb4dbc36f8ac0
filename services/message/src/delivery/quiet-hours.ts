/**
 * Quiet hours in the carrier's time zone: non-urgent messages due inside the window wait for its
 * end. The window may wrap midnight (21:00–08:00, the default). Exact with Intl (any IANA zone).
 */
export interface QuietWindow {
  /** Minutes after local midnight, start inclusive, end exclusive; equal = no quiet hours. */
  startMin: number;
  endMin: number;
}

/** "21:00-08:00" → the window; "" or "off" → none. Throws a readable error otherwise. */
export function parseQuietHours(text: string): QuietWindow | undefined {
  if (text === "" || text === "off") return undefined;
  const m = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$/.exec(text);
  if (!m) throw new Error(`quiet hours must look like 21:00-08:00 (or "off"), got ${JSON.stringify(text)}`);
  const w = { startMin: Number(m[1]) * 60 + Number(m[2]), endMin: Number(m[3]) * 60 + Number(m[4]) };
  return w.startMin === w.endMin ? undefined : w;
}

export class ZonedTime {
  private readonly fmt: Intl.DateTimeFormat;

  constructor(readonly timeZone: string) {
    this.fmt = new Intl.DateTimeFormat("en-US", {
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

  fields(ms: number) {
    const out = { year: 0, month: 0, day: 0, hour: 0, minute: 0, second: 0 };
    for (const p of this.fmt.formatToParts(new Date(ms))) {
      if (p.type in out) out[p.type as keyof typeof out] = Number(p.value);
    }
    return out;
  }

  /** "YYYY-MM-DD" of the instant in the zone. */
  day(ms: number): string {
    const f = this.fields(ms);
    return `${f.year}-${String(f.month).padStart(2, "0")}-${String(f.day).padStart(2, "0")}`;
  }

  /** The instant of a wall time in the zone (days may overflow: Date.UTC normalises them). */
  instant(year: number, month: number, day: number, minuteOfDay: number): number {
    const wall = Date.UTC(year, month - 1, day, 0, minuteOfDay);
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

  /** When the window that holds `ms` ends; undefined when `ms` is outside quiet hours. */
  quietUntil(ms: number, w: QuietWindow | undefined): number | undefined {
    if (!w) return undefined;
    const f = this.fields(ms);
    const min = f.hour * 60 + f.minute;
    const wraps = w.startMin > w.endMin;
    const inside = wraps ? min >= w.startMin || min < w.endMin : min >= w.startMin && min < w.endMin;
    if (!inside) return undefined;
    // The end is today when we are before it (or the window does not wrap), else tomorrow.
    const tomorrow = wraps && min >= w.startMin;
    return this.instant(f.year, f.month, f.day + (tomorrow ? 1 : 0), w.endMin);
  }

  /** The first instant of the day after `ms`'s day at `minuteOfDay` (daily caps resume then). */
  nextDayAt(ms: number, minuteOfDay: number): number {
    const f = this.fields(ms);
    return this.instant(f.year, f.month, f.day + 1, minuteOfDay);
  }
}

/** The time the platform runs on: real, or set by tests. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
