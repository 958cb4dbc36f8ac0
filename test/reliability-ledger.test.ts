/**
 * The accounting `npm run reliability` judges the platform by (scripts/lib/reliability/ledger.ts):
 * it must see a lost alert, a doubled one, and an alert of a level the line should not have had,
 * and tell alert SMS from bills and from other messages.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ALERT_LEVELS,
  alertBalance,
  alertLevelOf,
  billOf,
  median,
  percentile,
  tally,
} from "../scripts/lib/reliability/ledger.js";
import { lineNumber, UsageModel } from "../scripts/lib/reliability/scale.js";

const line = (n: number) => ({
  subscriptionId: `L000000000${n}`,
  msisdn: `8210000000${n}`,
  email: `l${n}@example.kr`,
  quotaBytes: 10n,
});
const sms = (n: number, text: string) => ({ destination: `8210000000${n}`, text });

describe("the reliability ledger", () => {
  it("counts one SMS per level as whole, and finds lost, doubled and unexpected alerts", () => {
    const lines = [line(1), line(2)];
    const whole = tally(
      [50, 80, 100].flatMap((l) => [
        sms(1, `2026-12 데이터를 ${l}% 사용했습니다.`),
        sms(2, `2026-12 데이터를 ${l}% 사용했습니다.`),
      ]),
      lines,
    );
    assert.deepEqual(alertBalance(whole, ALERT_LEVELS), { sent: 6, lost: 0, doubled: 0 });
    const broken = tally(
      [
        sms(1, "2026-12 데이터를 50% 사용했습니다."),
        sms(1, "2026-12 데이터를 50% 사용했습니다."), // doubled
        sms(1, "2026-12 데이터를 100% 사용했습니다."), // 80 % lost
        sms(2, "2026-12 데이터를 50% 사용했습니다."),
        sms(2, "2026-12 데이터를 80% 사용했습니다."),
        sms(2, "2026-12 데이터를 100% 사용했습니다."),
        sms(2, "2026-12 데이터를 90% 사용했습니다."), // a level nobody expects
        sms(9, "2026-12 데이터를 50% 사용했습니다."), // another line's: not counted
      ],
      lines,
    );
    assert.deepEqual(alertBalance(broken, ALERT_LEVELS), { sent: 6, lost: 1, doubled: 2 });
  });

  it("tells bills and other messages from alerts", () => {
    assert.equal(alertLevelOf("2026-12 데이터를 80% 사용했습니다."), 80);
    assert.equal(alertLevelOf("2026-11 청구 금액은 60,500원입니다."), undefined);
    assert.deepEqual(billOf("2026-11 청구 금액은 60,500원입니다."), { month: "2026-11", totalKrw: 60_500 });
    const t = tally([sms(1, "2026-11 청구 금액은 60,500원입니다."), sms(1, "가입을 환영합니다.")], [line(1)]);
    assert.deepEqual(t.get("L0000000001"), { levels: new Map(), bills: 1, other: 1 });
  });

  it("quotes medians and percentiles of the figures it was given", () => {
    assert.equal(median([5, 1, 3]), 3);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(
      percentile(
        [...Array(100).keys()].map((i) => i + 1),
        99,
      ),
      99,
    );
    assert.equal(percentile([], 99), 0);
  });

  it("compares every line's total with what was produced, line by line", () => {
    assert.equal(lineNumber("L0000000123"), 123);
    assert.equal(lineNumber("L123"), -1);
    assert.equal(lineNumber("X0000000123"), -1);
    const model = new UsageModel(4);
    for (const [line, bytes] of [
      [1, 100],
      [1, 110],
      [2, 200],
      [3, 300],
      [3, 330],
      [3, 310],
    ] as const)
      model.add(line, bytes);
    assert.equal(model.produced, 6);
    const used = new Float64Array(5);
    used.set([0, 210, 200, 940, 0]);
    assert.deepEqual(model.compare(used, 0), { lost: 0, doubled: 0, linesWrong: 0, foreign: 0 });
    // Line 1 lost its 110, line 3 counted its 330 twice: they do not cancel out.
    used.set([0, 100, 200, 1270, 0]);
    assert.deepEqual(model.compare(used, 0), { lost: 1, doubled: 1, linesWrong: 2, foreign: 0 });
    // Usage on a line nothing was produced for, and a single byte too many, are both seen.
    used.set([0, 210, 201, 940, 5]);
    assert.deepEqual(model.compare(used, 2), { lost: 0, doubled: 2, linesWrong: 2, foreign: 2 });
  });
});
