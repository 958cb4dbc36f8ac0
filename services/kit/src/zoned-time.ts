/**
 * Wall-clock time in one IANA zone, exactly (DST included) with Intl: the fields of an instant
 * there, and the instant of a wall time there.
 */
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

  /**
   * The instant of a wall time in the zone (days may overflow: Date.UTC normalises them). From
   * that wall time read as UTC, corrected by the zone's offset, again if the offset at the first
   * guess differs (a DST change between).
   */
  instant(year: number, month: number, day: number, minuteOfDay = 0): number {
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
}
