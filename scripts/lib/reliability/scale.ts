/**
 * The checks of `npm run reliability -- --scale N`, where lines are far too many to follow one by
 * one: every line's month total against the model of what was produced (read back with
 * `StreamMonthTotals`), the month's invoices against the lines the domain says were live in it,
 * the plain invoices' amounts against the plan's fee plus VAT, and the bill requests on the batch
 * unit's topic, one per invoiced line.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { NotificationKind, NotificationRequestSchema } from "../../../gen/telco/message/v1/events_pb.js";
import type { UsageService } from "../../../gen/telco/usage/v1/usage_pb.js";
import { createKafka } from "../../../services/kit/src/kafka.js";
import { createLogger } from "../../../services/kit/src/logger.js";
import { createKnex } from "../../../services/kit/src/postgres.js";
import type { grpcClient } from "../../../test/support/clients.js";

/** The line number of a line id ("L0000000123" → 123), or -1 for anything else. */
export function lineNumber(id: string): number {
  return /^L\d{10}$/.test(id) ? Number(id.slice(1)) : -1;
}

/**
 * What was produced per line (index = line number), in bytes, and the comparison with the
 * counters. A line's difference is turned into events with the mean size of its events, at least
 * one when it differs at all: a lost event and a doubled one of another line never cancel out,
 * as each line is compared on its own.
 */
export class UsageModel {
  readonly bytes: Float64Array;
  readonly events: Uint32Array;
  constructor(readonly lines: number) {
    this.bytes = new Float64Array(lines + 1);
    this.events = new Uint32Array(lines + 1);
  }

  add(line: number, bytes: number): void {
    this.bytes[line] = (this.bytes[line] as number) + bytes;
    this.events[line] = (this.events[line] as number) + 1;
  }

  get produced(): number {
    let n = 0;
    for (const e of this.events) n += e;
    return n;
  }

  /** Lost and doubled events when the counters say `used` (index = line number). */
  compare(used: Float64Array, foreign: number): UsageComparison {
    let lost = 0;
    let doubled = 0;
    let linesWrong = 0;
    for (let i = 1; i <= this.lines; i++) {
      const diff = (used[i] as number) - (this.bytes[i] as number);
      if (diff === 0) continue;
      linesWrong += 1;
      // A line nothing was produced for counts one event too many, whatever its size.
      const events = this.events[i] as number;
      const n = events === 0 ? 1 : Math.max(1, Math.round(Math.abs(diff) / ((this.bytes[i] as number) / events)));
      if (diff < 0) lost += n;
      else doubled += n;
    }
    return { lost, doubled, linesWrong, foreign };
  }
}

export interface UsageComparison {
  lost: number;
  doubled: number;
  linesWrong: number;
  /** Lines with usage that nothing was produced for, ids that are not lines, lines streamed twice. */
  foreign: number;
}

/** Every line's total of the month, as billing would read it (index = line number). */
export async function monthTotals(
  usage: ReturnType<typeof grpcClient<typeof UsageService>>,
  month: string,
  lines: number,
): Promise<{ used: Float64Array; foreign: number; read: number }> {
  const used = new Float64Array(lines + 1);
  const seen = new Uint8Array(lines + 1);
  let foreign = 0;
  let read = 0;
  for await (const page of usage.streamMonthTotals({ month, pageSize: 10_000 }, { timeoutMs: 600_000 })) {
    for (const t of page.totals) {
      read += 1;
      const n = lineNumber(t.subscriptionId);
      // A line streamed twice would be billed twice: counted with the lines that are not ours.
      if (n < 1 || n > lines || seen[n]) foreign += 1;
      else {
        seen[n] = 1;
        used[n] = Number(t.usedBytes);
      }
    }
  }
  return { used, foreign, read };
}

export interface InvoiceCheck {
  /** Lines live during some part of the month (the domain's rows), each owed one invoice. */
  expected: number;
  written: number;
  /** Expected lines without an invoice, and invoices of lines that were not live. */
  missing: number;
  extra: number;
  /** Invoices numbered 1..n of the month, each number once. */
  numbering_gaps: number;
  /**
   * Lines on one plan all month with nothing else on the bill (no VAS, discount, payment, status
   * change or usage): their invoice is exactly the plan's fee plus VAT (10 %, truncated).
   */
  plain_checked: number;
  plain_wrong: number;
}

function monthBounds(month: string, timeZone: string): [string, string] {
  const [y, m] = month.split("-").map(Number) as [number, number];
  const next = m === 12 ? `${y + 1}-01` : `${y}-${String(m + 1).padStart(2, "0")}`;
  return [`${month}-01 00:00:00 ${timeZone}`, `${next}-01 00:00:00 ${timeZone}`];
}

/** The lines live during some part of the month: the invoices a billing run owes. */
function liveSql(bounds: [string, string]): { sql: string; args: string[] } {
  return {
    sql: `select s.subscription_id from domain.subscriptions s
      where s.activated_at < ?::timestamptz and (s.terminated_at is null or s.terminated_at > ?::timestamptz)`,
    args: [bounds[1], bounds[0]],
  };
}

/** How many lines were live during some part of the month (month bounds in the carrier's time zone). */
export async function liveLines(url: string, month: string, timeZone: string): Promise<number> {
  const knex = createKnex({ url, schema: "billing", poolMax: 1 });
  try {
    const live = liveSql(monthBounds(month, timeZone));
    const r = (await knex.raw(`select count(*) as n from (${live.sql}) l`, live.args)) as { rows: { n: string }[] };
    return Number(r.rows[0]?.n ?? 0);
  } finally {
    await knex.destroy();
  }
}

/**
 * The month's invoices against the domain, in SQL (month bounds in the carrier's time zone).
 * Whole-table set operations: the tables are analyzed first (a billing run has just written a
 * million invoices) and nested loops are off, so that no stale estimate turns a check over a
 * million lines into a nested loop of a million by a million.
 */
export async function checkInvoices(url: string, month: string, timeZone: string): Promise<InvoiceCheck> {
  const knex = createKnex({ url, schema: "billing", poolMax: 1 });
  const bounds = monthBounds(month, timeZone);
  const live = liveSql(bounds);
  try {
    await knex.raw("analyze billing.invoices, billing.usage_snapshot");
    return await knex.transaction(async (trx) => {
      await trx.raw("set local enable_nestloop = off");
      const one = async (sql: string, args: string[]) =>
        Number(((await trx.raw(sql, args)) as { rows: { n: string }[] }).rows[0]?.n ?? 0);
      const expected = await one(`select count(*) as n from (${live.sql}) l`, live.args);
      const written = await one("select count(*) as n from billing.invoices where month = ?", [month]);
      const missing = await one(
        `select count(*) as n from (${live.sql}) l
         where not exists (select 1 from billing.invoices i where i.subscription_id = l.subscription_id and i.month = ?)`,
        [...live.args, month],
      );
      const extra = await one(
        `select count(*) as n from billing.invoices i where i.month = ?
         and not exists (select 1 from (${live.sql}) l where l.subscription_id = i.subscription_id)`,
        [month, ...live.args],
      );
      // Numbers "<month>-<n>": every n from 1 to the count, once. Counted: the invoices whose
      // number is not one of 1..count, or repeats one (0 exactly when the numbers are 1..count).
      const numbering_gaps = await one(
        `with x as (select substring(invoice_number from '(\\d+)$')::bigint as n from billing.invoices where month = ?)
         select (select count(*) from x) - (select count(distinct n) from x where n between 1 and (select count(*) from x)) as n`,
        [month],
      );
      const plain = (await trx.raw(
        `with b as (select tstzrange(?::timestamptz, ?::timestamptz, '[)') as r),
         plans_in_month as (
           select x.subscription_id from domain.subscription_plan x, b where x.valid && b.r
           group by x.subscription_id having count(*) = 1),
         one_status as (
           select h.subscription_id from domain.subscription_status_history h
           group by h.subscription_id having count(*) = 1),
         plain as (
           select s.subscription_id, p.monthly_fee_krw as fee
           from domain.subscriptions s
           join plans_in_month pm on pm.subscription_id = s.subscription_id
           join one_status os on os.subscription_id = s.subscription_id
           join domain.subscription_plan sp on sp.subscription_id = s.subscription_id
           join domain.plans p on p.plan_id = sp.plan_id
           cross join b
           where s.status = 'active' and sp.valid @> b.r
             and not exists (select 1 from domain.subscription_vas v where v.subscription_id = s.subscription_id and v.valid && b.r)
             and not exists (select 1 from domain.subscription_discount d where d.subscription_id = s.subscription_id and d.valid && b.r)
             and not exists (select 1 from domain.micro_payments mp where mp.subscription_id = s.subscription_id and mp.month = ?)
             and not exists (select 1 from billing.usage_snapshot u where u.subscription_id = s.subscription_id and u.month = ? and u.used_bytes > 0)
         )
         select count(*) as checked,
                count(*) filter (where i.total_krw is distinct from plain.fee + plain.fee * 10 / 100) as wrong
         from plain left join billing.invoices i on i.subscription_id = plain.subscription_id and i.month = ?`,
        [bounds[0], bounds[1], month, month, month],
      )) as { rows: { checked: string; wrong: string }[] };
      return {
        expected,
        written,
        missing,
        extra,
        numbering_gaps,
        plain_checked: Number(plain.rows[0]?.checked ?? 0),
        plain_wrong: Number(plain.rows[0]?.wrong ?? 0),
      };
    });
  } finally {
    await knex.destroy();
  }
}

export interface BillCount {
  records: number;
  /** Lines with one bill request of the month (however often Kafka delivered it). */
  lines: number;
  /** Lines with more than one distinct bill request of the month: two bills would go out. */
  doubled: number;
  /** Records that are not bill requests of the month. */
  other: number;
  /** The lines billed, for comparing with the invoices. */
  ids: Set<string>;
}

/**
 * Reads the whole bill topic (to its end as it is now) and counts the bill requests per line. A
 * request the producer sent twice has the same request id, which the message unit stores once:
 * only distinct request ids for one line and month would be two bills.
 */
export async function countBills(o: {
  brokers: string[];
  topic: string;
  month: string;
  log?: (s: string) => void;
  /** How long reading to the end may take (default 10 min). */
  timeoutMs?: number;
}): Promise<BillCount> {
  const logger = createLogger({ unit: "reliability", level: "error", destination: process.stderr });
  const kafka = createKafka({ brokers: o.brokers, clientId: "reliability-bills", logger });
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map(
    (await admin.fetchTopicOffsets(o.topic)).map((p) => [p.partition, { low: BigInt(p.low), high: BigInt(p.high) }]),
  );
  await admin.disconnect();
  const first = new Map<string, string>();
  const ids = new Set<string>();
  let records = 0;
  let doubled = 0;
  let other = 0;
  const remaining = new Map([...ends].filter(([, e]) => e.high > e.low).map(([p, e]) => [p, e.high]));
  if (remaining.size === 0) return { records, lines: 0, doubled, other, ids };
  const consumer = kafka.consumer({ groupId: `reliability-bills-${Date.now()}`, maxBytes: 64 << 20 });
  await consumer.connect();
  await consumer.subscribe({ topic: o.topic, fromBeginning: true });
  let done!: () => void;
  const finished = new Promise<void>((r) => {
    done = r;
  });
  let lastLog = Date.now();
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        records += 1;
        try {
          const r = fromBinary(NotificationRequestSchema, m.value ?? new Uint8Array());
          if (
            r.kind !== NotificationKind.INVOICE_ISSUED ||
            r.detail.case !== "invoiceIssued" ||
            r.detail.value.month !== o.month
          ) {
            other += 1;
            continue;
          }
          const seen = first.get(r.subscriptionId);
          if (seen === undefined) {
            first.set(r.subscriptionId, r.requestId);
            ids.add(r.subscriptionId);
          } else if (seen !== r.requestId) doubled += 1;
        } catch {
          other += 1;
        }
      }
      const high = remaining.get(batch.partition);
      if (high !== undefined && BigInt(batch.lastOffset()) + 1n >= high) remaining.delete(batch.partition);
      if (Date.now() - lastLog > 5_000) {
        lastLog = Date.now();
        o.log?.(`  bill requests read: ${records.toLocaleString("en-US")}`);
      }
      if (remaining.size === 0) done();
    },
  });
  // Every record is on the topic already: reading them must not take longer than this.
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new Error(`reading ${o.topic} did not reach its end in ${o.timeoutMs ?? 600_000} ms (${records} read)`)),
      o.timeoutMs ?? 600_000,
    );
  });
  try {
    await Promise.race([finished, timedOut]);
  } finally {
    clearTimeout(timer);
    await consumer.disconnect().catch(() => {});
  }
  return { records, lines: first.size, doubled, other, ids };
}
