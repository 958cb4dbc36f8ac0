/**
 * What a round of `npm run reliability` expects and what it observed: per line the distinct usage
 * events produced (each of the same size, so a counter's difference from the expected total is a
 * whole number of lost or doubled events), the alert levels the line must get one SMS each for,
 * and whether it gets a bill.
 */
export interface LineUnderTest {
  subscriptionId: string;
  /** International digits the SMSC sees as the destination. */
  msisdn: string;
  /** The customer's e-mail (where bills go). */
  email: string;
  quotaBytes: bigint;
}

export interface Reconciliation {
  round: string;
  fault: string;
  injected: number;
  lines: number;
  events_produced: number;
  events_sent: number;
  duplicates_sent: number;
  events_counted: number;
  events_lost: number;
  events_doubled: number;
  dead_lettered: number;
  alerts_expected: number;
  alerts_sent: number;
  alerts_lost: number;
  alerts_doubled: number;
  invoices_expected: number;
  invoices_written: number;
  invoices_wrong: number;
  bills_expected: number;
  bills_sent: number;
  messages_submitted: number;
  messages_delivered: number;
  /** Alerts or bills that never left. */
  messages_lost: number;
  messages_doubled: number;
  /** From the fault's injection to the platform being whole again (every count as expected), ms. */
  recovery_ms: number;
}

/** A reconciliation with nothing expected or seen yet: a round fills in what it is about. */
export function blank(round: string, fault: string): Reconciliation {
  return {
    round,
    fault,
    injected: 0,
    lines: 0,
    events_produced: 0,
    events_sent: 0,
    duplicates_sent: 0,
    events_counted: 0,
    events_lost: 0,
    events_doubled: 0,
    dead_lettered: 0,
    alerts_expected: 0,
    alerts_sent: 0,
    alerts_lost: 0,
    alerts_doubled: 0,
    invoices_expected: 0,
    invoices_written: 0,
    invoices_wrong: 0,
    bills_expected: 0,
    bills_sent: 0,
    messages_submitted: 0,
    messages_delivered: 0,
    messages_lost: 0,
    messages_doubled: 0,
    recovery_ms: 0,
  };
}

export const ALERT_LEVELS = [50, 80, 100] as const;

/** An SMS's alert level, from the scenario's template text ("… 데이터를 80% 사용했습니다."). */
export function alertLevelOf(text: string): number | undefined {
  const m = /데이터를 (\d+)% 사용했습니다/.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** A bill SMS ("2026-11 청구 금액은 60,500원입니다.") and its amount in won. */
export function billOf(text: string): { month: string; totalKrw: number } | undefined {
  const m = /^(\d{4}-\d{2}) 청구 금액은 ([\d,]+)원입니다/.exec(text);
  return m ? { month: m[1] as string, totalKrw: Number((m[2] as string).replace(/,/g, "")) } : undefined;
}

/** Counts per line of SMS kinds at the SMSC: alert levels and bills. */
export function tally(
  submitted: { destination: string; text: string }[],
  lines: LineUnderTest[],
): Map<string, { levels: Map<number, number>; bills: number; other: number }> {
  const byMsisdn = new Map(lines.map((l) => [l.msisdn, l.subscriptionId]));
  const out = new Map<string, { levels: Map<number, number>; bills: number; other: number }>();
  for (const l of lines) out.set(l.subscriptionId, { levels: new Map(), bills: 0, other: 0 });
  for (const s of submitted) {
    const sid = byMsisdn.get(s.destination);
    if (!sid) continue;
    const t = out.get(sid) as { levels: Map<number, number>; bills: number; other: number };
    const level = alertLevelOf(s.text);
    if (level !== undefined) t.levels.set(level, (t.levels.get(level) ?? 0) + 1);
    else if (billOf(s.text)) t.bills += 1;
    else t.other += 1;
  }
  return out;
}

/** Alerts missing and doubled over the lines, each line expecting one SMS per level in `levels`. */
export function alertBalance(
  t: ReturnType<typeof tally>,
  levels: readonly number[],
): { sent: number; lost: number; doubled: number } {
  let sent = 0;
  let lost = 0;
  let doubled = 0;
  for (const { levels: got } of t.values()) {
    for (const level of levels) {
      const n = got.get(level) ?? 0;
      sent += n;
      if (n === 0) lost += 1;
      if (n > 1) doubled += n - 1;
    }
    // A level nobody expected is a doubled alert too (e.g. 50 % sent after an 80 % jump).
    for (const [level, n] of got) if (!levels.includes(level)) doubled += n;
  }
  return { sent, lost, doubled };
}

export const median = (xs: number[]): number => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

export const percentile = (xs: number[], p: number): number => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number;
};
