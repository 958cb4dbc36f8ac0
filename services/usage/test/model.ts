/**
 * The reference model of invariants 1–3: what the pipeline must end with for a stream of events
 * and quota changes, computed directly from the order records have on their partition.
 */
import { SEQ_WINDOW } from "../src/redis/scripts.js";

const LEVELS = [50, 80, 100] as const;

export class LineModel {
  /** Per month label: used bytes, levels done (bitmask), sequence numbers seen. */
  readonly months = new Map<string, { used: number; done: number; seen: Set<number>; hi: number }>();
  /** The quota before any change (undefined = unknown; 0 = unlimited), then changes from a month on. */
  private q0: number | undefined;
  private readonly changes: { from: string; quota: number }[] = [];
  readonly alerts: string[] = [];
  stale = 0;

  constructor(readonly line: string) {}

  private month(label: string) {
    let m = this.months.get(label);
    if (!m) {
      m = { used: 0, done: 0, seen: new Set(), hi: -1 };
      this.months.set(label, m);
    }
    return m;
  }

  /** An event as the aggregator meets it, in partition order. */
  event(label: string, seq: number, bytes: number): void {
    const m = this.month(label);
    if (m.hi >= 0 && m.hi - seq >= SEQ_WINDOW) {
      this.stale += 1;
      return;
    }
    if (m.seen.has(seq)) return;
    m.seen.add(seq);
    m.hi = Math.max(m.hi, seq);
    m.used += bytes;
    this.evaluate(label);
  }

  /**
   * A quota from month `from` ("YYYY-MM") on (earlier months keep theirs); the first quota heard
   * of applies to every month. Months whose quota changes are evaluated again.
   */
  setQuota(quota: number, from?: string): void {
    const before = new Map([...this.months.keys()].map((l) => [l, this.quotaOf(l)]));
    if (this.q0 === undefined && this.changes.length === 0) this.q0 = quota;
    else if (from === undefined) {
      this.q0 = quota;
      this.changes.length = 0;
    } else {
      const keep = this.changes.filter((c) => c.from < from);
      this.changes.length = 0;
      this.changes.push(...keep, { from, quota });
    }
    for (const label of this.months.keys()) if (this.quotaOf(label) !== before.get(label)) this.evaluate(label);
  }

  quotaOf(label: string): number | undefined {
    let q = this.q0;
    for (const c of this.changes) if (label >= c.from) q = c.quota;
    return q;
  }

  private evaluate(label: string): void {
    const m = this.month(label);
    const q = this.quotaOf(label);
    if (q === undefined || q <= 0) return;
    let level: number | undefined;
    for (let i = LEVELS.length - 1; i >= 0; i--) {
      const bit = 1 << i;
      if (m.used * 100 >= (LEVELS[i] as number) * q && (m.done & bit) === 0) {
        level ??= LEVELS[i];
        m.done |= bit;
      }
    }
    if (level !== undefined) this.alerts.push(`usage-threshold:${this.line}:${label}:${level}`);
  }

  levels(label: string): number[] {
    const done = this.months.get(label)?.done ?? 0;
    return LEVELS.filter((_, i) => (done & (1 << i)) !== 0);
  }
}
