import { ZonedTime } from "../../../kit/src/zoned-time.js";

/**
 * The invoice rules, as a pure function of a line's history in one month (no I/O: every rule is a
 * table-driven test, services/batch/test/invoice.test.ts). The README's "Invoice rules" section
 * states them for operators; this is the one place they are implemented.
 *
 * Days. The month is cut into its calendar days in the carrier's time zone (Asia/Seoul by default).
 * A day is billed when the line was live during any part of it (activation and termination days
 * are billed), and it is billed to the rows in force at the line's **last live moment of that day**
 * (the day's end, or the termination): a plan changed mid-day bills that day to the new plan, so
 * every live day is billed to exactly one plan row.
 *
 * Amounts, in whole won, every item truncated (원 미만 절사) after exact proration:
 *  - a plan: monthly fee × its days / days in the month (consecutive days of one plan are one
 *    item, however many history rows hold them);
 *  - a VAS row: likewise (a free VAS still shows, at 0);
 *  - discounts, in their catalogue apply_order (then id), each prorated by the days it covers:
 *    a percent discount takes its rate of the fees of the days it covers (target plan_fee: the plan
 *    rows; all_fees: plan and VAS rows), a fixed one its amount × days / days in the month; each is
 *    capped at what the earlier ones left of its target (and of all fees), so fees never go
 *    below zero;
 *  - micro-payments of the month, one line per merchant (third-party charges: not subject to VAT);
 *  - data overage, by the plan in force at the line's last live moment of the month (its quota is
 *    the one the usage unit alerted against): ceil((used − quota) / unit) units × unit price,
 *    at most the plan's cap; unlimited plans (quota 0) and plans without an overage unit charge none;
 *  - adjustments carried from earlier months (usage that arrived after they were closed);
 *  - VAT: 10 % of everything except micro-payments, truncated, never below zero.
 * subtotal = every item but VAT; total = subtotal + VAT.
 */

export interface PlanInfo {
  planId: string;
  name: string;
  monthlyFeeKrw: number;
  quotaBytes: bigint;
  overageUnitBytes: bigint;
  overageUnitPriceKrw: number;
  overageCapKrw: number;
}

export interface VasInfo {
  vasId: string;
  name: string;
  monthlyFeeKrw: number;
}

export interface DiscountInfo {
  discountId: string;
  name: string;
  kind: "percent" | "fixed";
  percentBp: number;
  amountKrw: number;
  target: "plan_fee" | "all_fees";
  applyOrder: number;
}

export interface Catalog {
  plans: Map<string, PlanInfo>;
  vas: Map<string, VasInfo>;
  discounts: Map<string, DiscountInfo>;
}

/** A history row: [fromMs, toMs) with toMs null while open. */
export interface Period {
  id: string;
  fromMs: number;
  toMs: number | null;
}

export interface LineMonthInput {
  subscriptionId: string;
  activatedMs: number;
  terminatedMs: number | null;
  plans: Period[];
  vas: Period[];
  discounts: Period[];
  microPayments: { merchant: string; amountKrw: number }[];
  usedBytes: bigint;
  adjustments: { description: string; amountKrw: number; refId: string }[];
}

export type InvoiceLineKind =
  | "plan_fee"
  | "vas_fee"
  | "discount"
  | "micro_payment"
  | "data_overage"
  | "adjustment"
  | "vat";

export interface ComputedLine {
  lineNo: number;
  kind: InvoiceLineKind;
  description: string;
  amountKrw: number;
  refId: string;
}

export interface ComputedInvoice {
  subscriptionId: string;
  month: string;
  subtotalKrw: number;
  vatKrw: number;
  totalKrw: number;
  usedBytes: bigint;
  lines: ComputedLine[];
}

/** A line's invoice cannot be computed from its history (the partition fails with this message). */
export class InvoiceDataError extends Error {}

export const VAT_PERCENT = 10;

/** A month's calendar days in the carrier's time zone. */
export class BillingMonth {
  readonly label: string;
  readonly year: number;
  readonly month: number;
  readonly days: number;
  /** dayStart[d] for d = 1..days + 1 (index 0 unused): the instants the days begin. */
  readonly dayStart: number[];

  constructor(label: string, timeZone: string) {
    const m = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(label);
    if (!m) throw new RangeError(`month ${JSON.stringify(label)}: expected YYYY-MM`);
    this.label = label;
    this.year = Number(m[1]);
    this.month = Number(m[2]);
    this.days = new Date(Date.UTC(this.year, this.month, 0)).getUTCDate();
    const zone = new ZonedTime(timeZone);
    this.dayStart = [Number.NaN];
    for (let d = 1; d <= this.days + 1; d++) this.dayStart.push(zone.instant(this.year, this.month, d));
  }

  get startMs(): number {
    return this.dayStart[1] as number;
  }

  get endMs(): number {
    return this.dayStart[this.days + 1] as number;
  }

  /** "MM/DD" of day d. */
  mmdd(d: number): string {
    return `${String(this.month).padStart(2, "0")}/${String(d).padStart(2, "0")}`;
  }
}

/** floor(a / b) for non-negative safe integers, exactly. */
function idiv(a: number, b: number): number {
  let q = Math.floor(a / b);
  if (q * b > a) q--;
  else if ((q + 1) * b <= a) q++;
  return q;
}

const covering = (rows: Period[], t: number) => rows.filter((r) => r.fromMs <= t && (r.toMs === null || t < r.toMs));

/**
 * The days (1-based) billed to each catalogue item, in runs of consecutive days in order of their
 * first day: rows of the same item that follow each other (a plan changed and changed back, a
 * history row split) are one run, so they bill as one item and truncate once.
 */
function daysPerRow(rows: Period[], lastLive: (number | undefined)[]): { row: Period; days: number[] }[] {
  const runs: { row: Period; days: number[] }[] = [];
  const open = new Map<string, { row: Period; days: number[] }>();
  for (let d = 1; d < lastLive.length; d++) {
    const t = lastLive[d];
    if (t === undefined) continue;
    for (const r of covering(rows, t)) {
      const run = open.get(r.id);
      if (run && run.days[run.days.length - 1] === d - 1) run.days.push(d);
      else {
        const fresh = { row: r, days: [d] };
        runs.push(fresh);
        open.set(r.id, fresh);
      }
    }
  }
  return runs.sort((a, b) => (a.days[0] as number) - (b.days[0] as number) || (a.row.id < b.row.id ? -1 : 1));
}

function span(month: BillingMonth, days: number[]): string {
  const first = days[0] as number;
  const last = days[days.length - 1] as number;
  return `${month.mmdd(first)}-${month.mmdd(last)}, ${days.length}/${month.days}일`;
}

const MiB = 1024n * 1024n;
const GiB = MiB * 1024n;

function bytesLabel(b: bigint): string {
  if (b >= GiB) return `${(Number((b * 100n) / GiB) / 100).toFixed(2)}GB`;
  return `${(Number((b * 100n) / MiB) / 100).toFixed(2)}MB`;
}

/** The overage rule of a plan at `used` bytes: started units over the quota × unit price, capped. */
export function overage(
  plan: PlanInfo,
  used: bigint,
): { over: bigint; units: bigint; chargeKrw: number; capped: boolean } {
  if (plan.quotaBytes <= 0n || plan.overageUnitBytes <= 0n || used <= plan.quotaBytes) {
    return { over: 0n, units: 0n, chargeKrw: 0, capped: false };
  }
  const over = used - plan.quotaBytes;
  const units = (over + plan.overageUnitBytes - 1n) / plan.overageUnitBytes;
  let charge = units * BigInt(plan.overageUnitPriceKrw);
  const capped = plan.overageCapKrw > 0 && charge > BigInt(plan.overageCapKrw);
  if (capped) charge = BigInt(plan.overageCapKrw);
  return { over, units, chargeKrw: Number(charge), capped };
}

/**
 * The adjustment for late usage of an earlier month: what the overage of that month's final plan
 * comes to with the late bytes, less what was billed without them (0 under the quota, or on a
 * plan without overage; the line still shows, so the subscriber sees the usage was counted).
 */
export function lateAdjustment(
  origin: string,
  plan: PlanInfo | undefined,
  billedBytes: bigint,
  newLateBytes: bigint,
): { description: string; amountKrw: number; refId: string } {
  const amount = plan ? overage(plan, billedBytes + newLateBytes).chargeKrw - overage(plan, billedBytes).chargeKrw : 0;
  return { description: `${origin} 마감 후 사용 ${bytesLabel(newLateBytes)} 정산`, amountKrw: amount, refId: origin };
}

export function computeInvoice(month: BillingMonth, catalog: Catalog, line: LineMonthInput): ComputedInvoice {
  const sid = line.subscriptionId;
  // The line's last live moment of each day, or undefined when it was not live that day.
  const lastLive: (number | undefined)[] = [undefined];
  let liveDays = 0;
  for (let d = 1; d <= month.days; d++) {
    const start = month.dayStart[d] as number;
    const end = month.dayStart[d + 1] as number;
    const live = line.activatedMs < end && (line.terminatedMs === null || line.terminatedMs > start);
    if (!live) {
      lastLive.push(undefined);
      continue;
    }
    liveDays++;
    lastLive.push((line.terminatedMs !== null && line.terminatedMs < end ? line.terminatedMs : end) - 1);
  }
  if (liveDays === 0) throw new InvoiceDataError(`line ${sid} was not live in ${month.label}`);

  const items: Omit<ComputedLine, "lineNo">[] = [];
  // Gross fees per day, for percent discounts over the days they cover.
  const dayPlanFee: { fee: number; days: Set<number> }[] = [];
  const dayVasFee: { fee: number; days: Set<number> }[] = [];

  const planRows = daysPerRow(line.plans, lastLive);
  const billedPlanDays = planRows.reduce((n, r) => n + r.days.length, 0);
  if (billedPlanDays !== liveDays) {
    const missing = lastLive.findIndex((t, d) => d > 0 && t !== undefined && covering(line.plans, t).length === 0);
    throw new InvoiceDataError(
      `line ${sid} has no plan in force on ${month.label}-${String(missing).padStart(2, "0")}`,
    );
  }
  // Plans and VAS alike: monthly fee × days / days in the month, per run of days.
  const fees = (
    runs: { row: Period; days: number[] }[],
    find: (id: string) => { name: string; monthlyFeeKrw: number } | undefined,
    kind: "plan_fee" | "vas_fee",
    perDay: { fee: number; days: Set<number> }[],
  ): number => {
    let total = 0;
    for (const { row, days } of runs) {
      const item = find(row.id);
      if (!item)
        throw new InvoiceDataError(
          `line ${sid}: ${kind === "plan_fee" ? "plan" : "VAS"} ${row.id} is not in the catalogue`,
        );
      const amount = idiv(item.monthlyFeeKrw * days.length, month.days);
      total += amount;
      perDay.push({ fee: item.monthlyFeeKrw, days: new Set(days) });
      items.push({ kind, description: `${item.name} (${span(month, days)})`, amountKrw: amount, refId: row.id });
    }
    return total;
  };
  const planTotal = fees(planRows, (id) => catalog.plans.get(id), "plan_fee", dayPlanFee);
  const vasTotal = fees(daysPerRow(line.vas, lastLive), (id) => catalog.vas.get(id), "vas_fee", dayVasFee);

  const discounts = daysPerRow(line.discounts, lastLive).map(({ row, days }) => {
    const d = catalog.discounts.get(row.id);
    if (!d) throw new InvoiceDataError(`line ${sid}: discount ${row.id} is not in the catalogue`);
    return { d, days };
  });
  discounts.sort(
    (a, b) =>
      a.d.applyOrder - b.d.applyOrder ||
      (a.d.discountId < b.d.discountId
        ? -1
        : a.d.discountId > b.d.discountId
          ? 1
          : (a.days[0] as number) - (b.days[0] as number)),
  );
  let planLeft = planTotal;
  let allLeft = planTotal + vasTotal;
  for (const { d, days } of discounts) {
    let amount: number;
    if (d.kind === "percent") {
      // Σ fee × days covered, over the rows of the target: the gross fees of those days × D.
      const rows = d.target === "plan_fee" ? dayPlanFee : [...dayPlanFee, ...dayVasFee];
      let feeDays = 0;
      for (const r of rows) feeDays += r.fee * days.filter((x) => r.days.has(x)).length;
      amount = idiv(feeDays * d.percentBp, month.days * 10_000);
    } else {
      amount = idiv(d.amountKrw * days.length, month.days);
    }
    amount = Math.min(amount, d.target === "plan_fee" ? planLeft : allLeft, allLeft);
    if (d.target === "plan_fee") planLeft -= amount;
    allLeft -= amount;
    items.push({
      kind: "discount",
      description: `${d.name} (${span(month, days)})`,
      amountKrw: -amount,
      refId: d.discountId,
    });
  }

  const byMerchant = new Map<string, { amount: number; n: number }>();
  for (const p of line.microPayments) {
    const m = byMerchant.get(p.merchant) ?? { amount: 0, n: 0 };
    m.amount += p.amountKrw;
    m.n++;
    byMerchant.set(p.merchant, m);
  }
  let microTotal = 0;
  for (const merchant of [...byMerchant.keys()].sort()) {
    const m = byMerchant.get(merchant) as { amount: number; n: number };
    microTotal += m.amount;
    items.push({
      kind: "micro_payment",
      description: `소액결제 ${merchant} (${m.n}건)`,
      amountKrw: m.amount,
      refId: "",
    });
  }

  // The plan at the line's last live moment of the month.
  const lastMoment = lastLive.filter((t) => t !== undefined).at(-1) as number;
  const finalRow = covering(line.plans, lastMoment)[0] as Period;
  const finalPlan = catalog.plans.get(finalRow.id) as PlanInfo;
  const o = overage(finalPlan, line.usedBytes);
  if (o.units > 0n) {
    items.push({
      kind: "data_overage",
      description: `데이터 초과 ${bytesLabel(o.over)} (${o.units}×${bytesLabel(finalPlan.overageUnitBytes)}×${finalPlan.overageUnitPriceKrw}원${o.capped ? `, 상한 ${finalPlan.overageCapKrw}원` : ""})`,
      amountKrw: o.chargeKrw,
      refId: finalPlan.planId,
    });
  }
  for (const a of line.adjustments) items.push({ kind: "adjustment", ...a });

  const subtotal = items.reduce((s, i) => s + i.amountKrw, 0);
  const taxable = Math.max(0, subtotal - microTotal);
  const vat = idiv(taxable * VAT_PERCENT, 100);
  items.push({ kind: "vat", description: `부가가치세 ${VAT_PERCENT}%`, amountKrw: vat, refId: "" });
  return {
    subscriptionId: sid,
    month: month.label,
    subtotalKrw: subtotal,
    vatKrw: vat,
    totalKrw: subtotal + vat,
    usedBytes: line.usedBytes,
    lines: items.map((i, k) => ({ lineNo: k + 1, ...i })),
  };
}
