import { ZonedTime as BaseZonedTime } from "../../../kit/src/zoned-time.js";

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

/** The carrier's wall clock, with the quiet-hours window and the daily caps' day boundary. */
export class ZonedTime extends BaseZonedTime {
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
