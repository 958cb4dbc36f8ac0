import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ZonedTime } from "../../kit/src/zoned-time.js";
import {
  BillingMonth,
  type Catalog,
  computeInvoice,
  InvoiceDataError,
  type LineMonthInput,
  type Period,
} from "../src/billing/invoice.js";

// The invoice rules, each against a hand-computed table (the arithmetic is in the comments).
// The catalogue is the domain unit's seeded one (services/domain/src/migrations), plus one
// large fixed discount to show the cap.
const MiB = 1024n * 1024n;
const GiB = 1024n * MiB;
const plan = (planId: string, name: string, fee: number, quota: bigint, unit = 0n, price = 0, cap = 0) => [
  planId,
  {
    planId,
    name,
    monthlyFeeKrw: fee,
    quotaBytes: quota,
    overageUnitBytes: unit,
    overageUnitPriceKrw: price,
    overageCapKrw: cap,
  },
];
const catalog: Catalog = {
  plans: new Map([
    plan("5G-SLIM-8G", "5G 슬림 8GB", 55_000, 8n * GiB),
    plan("5G-BASIC-24G", "5G 베이직 24GB", 59_000, 24n * GiB),
    plan("5G-STD-110G", "5G 스탠다드 110GB", 69_000, 110n * GiB),
    plan("5G-PREMIUM-UNL", "5G 프리미엄 무제한", 89_000, 0n),
    plan("LTE-DATA-2G", "LTE 데이터 2GB", 33_000, 2n * GiB, MiB, 23, 33_000),
    plan("LTE-SENIOR-1G", "LTE 시니어 1GB", 22_000, GiB),
  ] as [string, never][]),
  vas: new Map([
    ["RINGBACK", { vasId: "RINGBACK", name: "컬러링", monthlyFeeKrw: 990 }],
    ["ROAMING-PASS", { vasId: "ROAMING-PASS", name: "로밍 데이터 패스", monthlyFeeKrw: 11_000 }],
    ["SPAM-BLOCK", { vasId: "SPAM-BLOCK", name: "스팸 차단", monthlyFeeKrw: 0 }],
  ]),
  discounts: new Map([
    [
      "CONTRACT-25",
      {
        discountId: "CONTRACT-25",
        name: "선택약정 25%",
        kind: "percent",
        percentBp: 2_500,
        amountKrw: 0,
        target: "plan_fee",
        applyOrder: 10,
      },
    ],
    [
      "FAMILY-5500",
      {
        discountId: "FAMILY-5500",
        name: "가족결합 5,500원",
        kind: "fixed",
        percentBp: 0,
        amountKrw: 5_500,
        target: "all_fees",
        applyOrder: 20,
      },
    ],
    [
      "WELFARE-11000",
      {
        discountId: "WELFARE-11000",
        name: "복지 할인 11,000원",
        kind: "fixed",
        percentBp: 0,
        amountKrw: 11_000,
        target: "all_fees",
        applyOrder: 30,
      },
    ],
    [
      "TEST-FIXED-20000",
      {
        discountId: "TEST-FIXED-20000",
        name: "시험 할인 20,000원",
        kind: "fixed",
        percentBp: 0,
        amountKrw: 20_000,
        target: "all_fees",
        applyOrder: 40,
      },
    ],
  ]),
};

const zone = new ZonedTime("Asia/Seoul");
/** An instant in Seoul. */
const kst = (y: number, m: number, d: number, h = 0, min = 0) => zone.instant(y, m, d, h * 60 + min);
const LONG_AGO = kst(2025, 1, 1);
const row = (id: string, fromMs: number, toMs: number | null = null): Period => ({ id, fromMs, toMs });

function line(over: Partial<LineMonthInput>): LineMonthInput {
  return {
    subscriptionId: "L0000000001",
    activatedMs: LONG_AGO,
    terminatedMs: null,
    plans: [row("5G-STD-110G", LONG_AGO)],
    vas: [],
    discounts: [],
    microPayments: [],
    usedBytes: 0n,
    adjustments: [],
    ...over,
  };
}

interface Case {
  name: string;
  month: string;
  line: Partial<LineMonthInput>;
  /** [kind, amount, description] per invoice line, VAT last. */
  lines: [string, number, string?][];
  subtotal: number;
  vat: number;
  total: number;
}

const OCT = "2026-10"; // 31 days
const cases: Case[] = [
  {
    name: "a whole month on one plan",
    month: OCT,
    line: {},
    lines: [
      ["plan_fee", 69_000, "5G 스탠다드 110GB (10/01-10/31, 31/31일)"],
      ["vat", 6_900, "부가가치세 10%"],
    ],
    subtotal: 69_000,
    vat: 6_900,
    total: 75_900,
  },
  {
    // Changed 10/15 10:00: days 1-14 the old plan, the change day the new one (its state at day's end).
    // 55,000 × 14 / 31 = 24,838.7 → 24,838; 69,000 × 17 / 31 = 37,838.7 → 37,838; VAT 6,267.6 → 6,267.
    name: "a mid-month plan change bills both plans' shares",
    month: OCT,
    line: { plans: [row("5G-SLIM-8G", LONG_AGO, kst(2026, 10, 15, 10)), row("5G-STD-110G", kst(2026, 10, 15, 10))] },
    lines: [
      ["plan_fee", 24_838, "5G 슬림 8GB (10/01-10/14, 14/31일)"],
      ["plan_fee", 37_838, "5G 스탠다드 110GB (10/15-10/31, 17/31일)"],
      ["vat", 6_267],
    ],
    subtotal: 62_676,
    vat: 6_267,
    total: 68_943,
  },
  {
    // Two history rows of the same plan, one after the other: one item, truncated once.
    name: "consecutive rows of one plan bill as one item",
    month: OCT,
    line: { plans: [row("5G-STD-110G", LONG_AGO, kst(2026, 10, 3)), row("5G-STD-110G", kst(2026, 10, 3))] },
    lines: [
      ["plan_fee", 69_000, "5G 스탠다드 110GB (10/01-10/31, 31/31일)"],
      ["vat", 6_900],
    ],
    subtotal: 69_000,
    vat: 6_900,
    total: 75_900,
  },
  {
    // Changed away and back: 10/01-10/09 STD, 10/10-10/19 SLIM, 10/20-10/31 STD again (three items).
    // 69,000 × 9 / 31 = 20,032.2; 55,000 × 10 / 31 = 17,741.9; 69,000 × 12 / 31 = 26,709.6.
    name: "a plan changed away and back bills each stretch",
    month: OCT,
    line: {
      plans: [
        row("5G-STD-110G", LONG_AGO, kst(2026, 10, 10)),
        row("5G-SLIM-8G", kst(2026, 10, 10), kst(2026, 10, 20)),
        row("5G-STD-110G", kst(2026, 10, 20)),
      ],
    },
    lines: [
      ["plan_fee", 20_032, "5G 스탠다드 110GB (10/01-10/09, 9/31일)"],
      ["plan_fee", 17_741, "5G 슬림 8GB (10/10-10/19, 10/31일)"],
      ["plan_fee", 26_709, "5G 스탠다드 110GB (10/20-10/31, 12/31일)"],
      ["vat", 6_448],
    ],
    subtotal: 64_482,
    vat: 6_448,
    total: 70_930,
  },
  {
    // February 2026 has 28 days; activated 2/10 15:00 → days 10-28 = 19 days.
    // 59,000 × 19 / 28 = 40,035.7 → 40,035; VAT 4,003.5 → 4,003.
    name: "February, a line activated mid-month",
    month: "2026-02",
    line: { activatedMs: kst(2026, 2, 10, 15), plans: [row("5G-BASIC-24G", kst(2026, 2, 10, 15))] },
    lines: [
      ["plan_fee", 40_035, "5G 베이직 24GB (02/10-02/28, 19/28일)"],
      ["vat", 4_003],
    ],
    subtotal: 40_035,
    vat: 4_003,
    total: 44_038,
  },
  {
    // February 2028 has 29 days; terminated 2/20 09:00 → days 1-20 (the termination day is billed).
    // 59,000 × 20 / 29 = 40,689.6 → 40,689; VAT 4,068.9 → 4,068.
    name: "a leap February, a line terminated mid-month",
    month: "2028-02",
    line: {
      terminatedMs: kst(2028, 2, 20, 9),
      plans: [row("5G-BASIC-24G", LONG_AGO, kst(2028, 2, 20, 9))],
    },
    lines: [
      ["plan_fee", 40_689, "5G 베이직 24GB (02/01-02/20, 20/29일)"],
      ["vat", 4_068],
    ],
    subtotal: 40_689,
    vat: 4_068,
    total: 44_757,
  },
  {
    // Terminated at 10/20 00:00 exactly: day 20 was never live → 19 days. 69,000 × 19 / 31 = 42,290.3.
    name: "terminated at midnight: that day is not billed",
    month: OCT,
    line: { terminatedMs: kst(2026, 10, 20), plans: [row("5G-STD-110G", LONG_AGO, kst(2026, 10, 20))] },
    lines: [
      ["plan_fee", 42_290, "5G 스탠다드 110GB (10/01-10/19, 19/31일)"],
      ["vat", 4_229],
    ],
    subtotal: 42_290,
    vat: 4_229,
    total: 46_519,
  },
  {
    // Activated 10/31 23:59: one day. 69,000 / 31 = 2,225.8 → 2,225; VAT 222.5 → 222.
    name: "activated in the month's last minute: one day",
    month: OCT,
    line: { activatedMs: kst(2026, 10, 31, 23, 59), plans: [row("5G-STD-110G", kst(2026, 10, 31, 23, 59))] },
    lines: [
      ["plan_fee", 2_225, "5G 스탠다드 110GB (10/31-10/31, 1/31일)"],
      ["vat", 222],
    ],
    subtotal: 2_225,
    vat: 222,
    total: 2_447,
  },
  {
    // Roaming pass 10/05 00:00 - 10/12 00:00 = days 5-11 = 7 days: 11,000 × 7 / 31 = 2,483.9 → 2,483.
    // A free VAS shows at 0. Subtotal 69,000 + 990 + 2,483 + 0 = 72,473; VAT 7,247.3 → 7,247.
    name: "VAS prorated like plans",
    month: OCT,
    line: {
      vas: [
        row("ROAMING-PASS", kst(2026, 10, 5), kst(2026, 10, 12)),
        row("RINGBACK", LONG_AGO),
        row("SPAM-BLOCK", LONG_AGO),
      ],
    },
    lines: [
      ["plan_fee", 69_000],
      ["vas_fee", 990, "컬러링 (10/01-10/31, 31/31일)"],
      ["vas_fee", 0, "스팸 차단 (10/01-10/31, 31/31일)"],
      ["vas_fee", 2_483, "로밍 데이터 패스 (10/05-10/11, 7/31일)"],
      ["vat", 7_247],
    ],
    subtotal: 72_473,
    vat: 7_247,
    total: 79_720,
  },
  {
    // Percent on the plan fee first (order 10): 69,000 × 25 % = 17,250; then fixed 5,500 (order 20).
    // 69,000 + 990 − 17,250 − 5,500 = 47,240; VAT 4,724.
    name: "discounts in apply order: percent of the plan fee, then fixed",
    month: OCT,
    line: {
      vas: [row("RINGBACK", LONG_AGO)],
      discounts: [row("FAMILY-5500", LONG_AGO), row("CONTRACT-25", LONG_AGO)],
    },
    lines: [
      ["plan_fee", 69_000],
      ["vas_fee", 990],
      ["discount", -17_250, "선택약정 25% (10/01-10/31, 31/31일)"],
      ["discount", -5_500, "가족결합 5,500원 (10/01-10/31, 31/31일)"],
      ["vat", 4_724],
    ],
    subtotal: 47_240,
    vat: 4_724,
    total: 51_964,
  },
  {
    // 25 % from 10/11 with the plan changed 10/15: fees of the covered days =
    // 55,000 × 4 (days 11-14) + 69,000 × 17 (days 15-31) = 1,393,000 (× 1/31 per day);
    // × 25 % / 31 = 11,233.9 → 11,233. Plans 24,838 + 37,838 = 62,676; − 11,233 = 51,443; VAT 5,144.
    name: "a percent discount over part of the month, across a plan change",
    month: OCT,
    line: {
      plans: [row("5G-SLIM-8G", LONG_AGO, kst(2026, 10, 15, 10)), row("5G-STD-110G", kst(2026, 10, 15, 10))],
      discounts: [row("CONTRACT-25", kst(2026, 10, 11))],
    },
    lines: [
      ["plan_fee", 24_838],
      ["plan_fee", 37_838],
      ["discount", -11_233, "선택약정 25% (10/11-10/31, 21/31일)"],
      ["vat", 5_144],
    ],
    subtotal: 51_443,
    vat: 5_144,
    total: 56_587,
  },
  {
    // A fixed discount for days 1-10: 5,500 × 10 / 31 = 1,774.2 → 1,774. 69,000 − 1,774 = 67,226.
    name: "a fixed discount prorated by its days",
    month: OCT,
    line: { discounts: [row("FAMILY-5500", LONG_AGO, kst(2026, 10, 11))] },
    lines: [
      ["plan_fee", 69_000],
      ["discount", -1_774, "가족결합 5,500원 (10/01-10/10, 10/31일)"],
      ["vat", 6_722],
    ],
    subtotal: 67_226,
    vat: 6_722,
    total: 73_948,
  },
  {
    // 22,000 − 25 % (5,500) = 16,500 − 11,000 = 5,500; the 20,000 discount is capped at the 5,500 left.
    name: "discounts never take fees below zero (capped in order)",
    month: OCT,
    line: {
      plans: [row("LTE-SENIOR-1G", LONG_AGO)],
      discounts: [row("TEST-FIXED-20000", LONG_AGO), row("WELFARE-11000", LONG_AGO), row("CONTRACT-25", LONG_AGO)],
    },
    lines: [
      ["plan_fee", 22_000],
      ["discount", -5_500],
      ["discount", -11_000],
      ["discount", -5_500, "시험 할인 20,000원 (10/01-10/31, 31/31일)"],
      ["vat", 0],
    ],
    subtotal: 0,
    vat: 0,
    total: 0,
  },
  {
    // One line per merchant, by name; micro-payments carry no VAT: VAT = 10 % of 69,000 only.
    name: "micro-payments of the month, outside VAT",
    month: OCT,
    line: {
      microPayments: [
        { merchant: "GAME-CO", amountKrw: 5_000 },
        { merchant: "APP-STORE", amountKrw: 1_100 },
        { merchant: "GAME-CO", amountKrw: 3_000 },
      ],
    },
    lines: [
      ["plan_fee", 69_000],
      ["micro_payment", 1_100, "소액결제 APP-STORE (1건)"],
      ["micro_payment", 8_000, "소액결제 GAME-CO (2건)"],
      ["vat", 6_900],
    ],
    subtotal: 78_100,
    vat: 6_900,
    total: 85_000,
  },
  {
    // 2 GiB quota; 100 MiB + 1 byte over → 101 started MiB × 23 = 2,323. VAT 3,532.3 → 3,532.
    name: "data overage: started units × unit price",
    month: OCT,
    line: { plans: [row("LTE-DATA-2G", LONG_AGO)], usedBytes: 2n * GiB + 100n * MiB + 1n },
    lines: [
      ["plan_fee", 33_000],
      ["data_overage", 2_323, "데이터 초과 100.00MB (101×1.00MB×23원)"],
      ["vat", 3_532],
    ],
    subtotal: 35_323,
    vat: 3_532,
    total: 38_855,
  },
  {
    // 2,000 MiB over → 46,000, capped at the plan's 33,000.
    name: "data overage capped",
    month: OCT,
    line: { plans: [row("LTE-DATA-2G", LONG_AGO)], usedBytes: 2n * GiB + 2_000n * MiB },
    lines: [
      ["plan_fee", 33_000],
      ["data_overage", 33_000, "데이터 초과 1.95GB (2000×1.00MB×23원, 상한 33000원)"],
      ["vat", 6_600],
    ],
    subtotal: 66_000,
    vat: 6_600,
    total: 72_600,
  },
  {
    name: "no overage on an unlimited plan, nor on a plan without an overage unit",
    month: OCT,
    line: {
      plans: [row("5G-PREMIUM-UNL", LONG_AGO, kst(2026, 10, 2)), row("5G-STD-110G", kst(2026, 10, 2))],
      usedBytes: 500n * GiB,
    },
    lines: [
      ["plan_fee", 2_870],
      ["plan_fee", 66_774],
      ["vat", 6_964],
    ],
    // 89,000 × 1 / 31 = 2,870.9 → 2,870; 69,000 × 30 / 31 = 66,774.1 → 66,774.
    subtotal: 69_644,
    vat: 6_964,
    total: 76_608,
  },
  {
    // Overage by the plan at the month's last live moment: changed to LTE-DATA-2G 10/21 (days 21-31).
    // 5G-STD 69,000 × 20 / 31 = 44,516.1; LTE 33,000 × 11 / 31 = 11,709.7; 10 MiB over → 230.
    name: "overage by the plan in force at the end of the month",
    month: OCT,
    line: {
      plans: [row("5G-STD-110G", LONG_AGO, kst(2026, 10, 21)), row("LTE-DATA-2G", kst(2026, 10, 21))],
      usedBytes: 2n * GiB + 10n * MiB,
    },
    lines: [
      ["plan_fee", 44_516],
      ["plan_fee", 11_709],
      ["data_overage", 230],
      ["vat", 5_645],
    ],
    subtotal: 56_455,
    vat: 5_645,
    total: 62_100,
  },
  {
    // Late usage of an earlier month, carried as an adjustment: in the VAT base.
    name: "an adjustment from an earlier month",
    month: OCT,
    line: { adjustments: [{ description: "2026-09 사용분 정산", amountKrw: 500, refId: "2026-09" }] },
    lines: [
      ["plan_fee", 69_000],
      ["adjustment", 500, "2026-09 사용분 정산"],
      ["vat", 6_950],
    ],
    subtotal: 69_500,
    vat: 6_950,
    total: 76_450,
  },
];

describe("invoice rules (hand-computed tables)", () => {
  for (const c of cases) {
    test(c.name, () => {
      const inv = computeInvoice(new BillingMonth(c.month, "Asia/Seoul"), catalog, line(c.line));
      assert.deepEqual(
        inv.lines.map((l) => [l.kind, l.amountKrw]),
        c.lines.map(([k, a]) => [k, a]),
      );
      c.lines.forEach(([, , description], i) => {
        if (description !== undefined) assert.equal(inv.lines[i]?.description, description);
      });
      assert.deepEqual(
        inv.lines.map((l) => l.lineNo),
        inv.lines.map((_, i) => i + 1),
      );
      assert.equal(inv.subtotalKrw, c.subtotal, "subtotal");
      assert.equal(inv.vatKrw, c.vat, "VAT");
      assert.equal(inv.totalKrw, c.total, "total");
      assert.equal(inv.totalKrw, inv.subtotalKrw + inv.vatKrw);
    });
  }

  test("a live day without a plan row is an error naming the line and the day", () => {
    assert.throws(
      () =>
        computeInvoice(
          new BillingMonth(OCT, "Asia/Seoul"),
          catalog,
          line({ plans: [row("5G-STD-110G", kst(2026, 10, 3))] }),
        ),
      (e: unknown) => e instanceof InvoiceDataError && /L0000000001 has no plan in force on 2026-10-01/.test(e.message),
    );
  });

  test("the month's days are calendar days in the carrier's zone", () => {
    const m = new BillingMonth("2026-10", "Asia/Seoul");
    assert.equal(m.days, 31);
    assert.equal(new Date(m.startMs).toISOString(), "2026-09-30T15:00:00.000Z");
    assert.equal(new Date(m.endMs).toISOString(), "2026-10-31T15:00:00.000Z");
    assert.equal(new BillingMonth("2026-02", "Asia/Seoul").days, 28);
    assert.equal(new BillingMonth("2028-02", "Asia/Seoul").days, 29);
    assert.throws(() => new BillingMonth("2026-13", "Asia/Seoul"), /expected YYYY-MM/);
  });
});
