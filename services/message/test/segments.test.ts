/**
 * SMS counting and splitting as a handset does it: GSM-7 (basic and extension tables) against
 * UCS-2, single against concatenated limits, and parts that never cut a character in two.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { countSms, SMS_LIMITS, smsEncoding, splitSms } from "../src/sms/segments.js";

const ko = (n: number) => "가".repeat(n);
const gsm = (n: number) => "a".repeat(n);
const emoji = (n: number) => "😀".repeat(n);

/** GSM 03.38 basic table by rows of 16 (0x00-0x7F), without 0x1B (the escape to the extension table). */
const BASIC_TABLE = [
  "@£$¥èéùìòÇ\nØø\rÅå",
  "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ",
  " !\"#¤%&'()*+,-./",
  "0123456789:;<=>?",
  "¡ABCDEFGHIJKLMNO",
  "PQRSTUVWXYZÄÖÑÜ§",
  "¿abcdefghijklmno",
  "pqrstuvwxyzäöñüà",
].join("");

describe("SMS segments", () => {
  const cases: [string, string, "gsm7" | "ucs2", number, number, number][] = [
    // label, text, encoding, units, segments, remaining in the last segment
    ["empty: one SMS of nothing, as handsets show it", "", "gsm7", 0, 1, 160],
    ["Korean 70", ko(70), "ucs2", 70, 1, 0],
    ["Korean 71", ko(71), "ucs2", 71, 2, 67 - 4],
    ["Korean 134", ko(134), "ucs2", 134, 2, 0],
    ["Korean 135", ko(135), "ucs2", 135, 3, 66],
    ["GSM 160", gsm(160), "gsm7", 160, 1, 0],
    ["GSM 161", gsm(161), "gsm7", 161, 2, 153 - 8],
    ["GSM 306", gsm(306), "gsm7", 306, 2, 0],
    ["GSM 307", gsm(307), "gsm7", 307, 3, 152],
    ["the whole GSM 03.38 basic table, one septet each", BASIC_TABLE, "gsm7", 127, 1, 33],
    ["extension characters count 2", "^{}\\[~]|€\f", "gsm7", 20, 1, 140],
    ["80 euro signs fill one SMS", "€".repeat(80), "gsm7", 160, 1, 0],
    ["81 euro signs: 76 per part (152 septets), never 76.5", "€".repeat(81), "gsm7", 162, 2, 153 - 10],
    ["an escape that would straddle a part goes whole to the next", `${gsm(152)}€${gsm(10)}`, "gsm7", 164, 2, 141],
    ["one Korean character makes the whole text UCS-2", `${gsm(100)}가`, "ucs2", 101, 2, 67 - 34],
    ["in UCS-2 an extension character is one unit", `€{}가`, "ucs2", 4, 1, 66],
    ["35 emoji = 70 units", emoji(35), "ucs2", 70, 1, 0],
    ["36 emoji = 72 units", emoji(36), "ucs2", 72, 2, 67 - 6],
    ["a surrogate pair that would straddle a part goes whole to the next", `${ko(2)}${emoji(40)}`, "ucs2", 82, 2, 51],
    ["a lone ESC control character is not GSM text", "\x1b", "ucs2", 1, 1, 69],
  ];
  for (const [label, text, encoding, units, segments, remaining] of cases) {
    it(label, () => {
      const c = countSms(text, 10);
      assert.deepEqual(
        { encoding: c.encoding, units: c.units, segments: c.segments, remaining: c.remainingInSegment },
        { encoding, units, segments, remaining },
      );
      assert.equal(c.longMessage, segments > 1);
      assert.equal(splitSms(text).length, segments);
    });
  }

  it("cuts between characters: the escape pair and the surrogate pair stay whole", () => {
    const [first, second] = splitSms(`${gsm(152)}€${gsm(10)}`);
    assert.equal(first, gsm(152));
    assert.equal(second, `€${gsm(10)}`);
    const parts = splitSms(`${ko(2)}${emoji(40)}`);
    assert.equal(parts[0], `${ko(2)}${emoji(32)}`, "66 units: the 33rd emoji would need units 67 and 68");
    assert.equal(parts[1], emoji(8));
  });

  it("reports the configured maximum and whether the text fits it", () => {
    assert.deepEqual(
      [countSms(gsm(306), 2).fits, countSms(gsm(307), 2).fits, countSms(gsm(307), 2).maxSegments],
      [true, false, 2],
    );
    assert.equal(countSms(gsm(10)).maxSegments, 10, "default maximum");
  });

  it("joined parts are the text, each part fits its limit and is full before the next starts", () => {
    const unit = fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom("a", "Z", "0", " ", "\n", "@", "é", "Δ") },
      { weight: 2, arbitrary: fc.constantFrom("€", "^", "{", "}", "[", "]", "~", "|", "\\", "\f") },
      { weight: 1, arbitrary: fc.constantFrom("가", "힣", "ç", "“") },
      { weight: 1, arbitrary: fc.constantFrom("😀", "📱", "𠜎") },
      { weight: 1, arbitrary: fc.string({ unit: "grapheme", minLength: 1, maxLength: 1 }) },
    );
    // Septets of a GSM-7 text's part (its characters are all GSM) or UTF-16 units of a UCS-2 one.
    const unitsOf = (part: string, encoding: "gsm7" | "ucs2") =>
      encoding === "gsm7" ? countSms(part).units : part.length;
    fc.assert(
      fc.property(fc.array(unit, { maxLength: 700 }), (chars) => {
        const text = chars.join("");
        const parts = splitSms(text);
        const c = countSms(text);
        assert.equal(parts.join(""), text);
        assert.equal(parts.length, c.segments);
        const limits = SMS_LIMITS[smsEncoding(text)];
        const limit = parts.length === 1 ? limits.single : limits.part;
        assert.ok(c.segments >= Math.max(1, Math.ceil(c.units / limit)));
        let total = 0;
        parts.forEach((part, i) => {
          const units = unitsOf(part, c.encoding);
          total += units;
          assert.ok(units <= limit, `part ${i} has ${units} units, over ${limit}`);
          const next = parts[i + 1];
          if (next !== undefined) {
            // Full: the next part's first character would not have fitted.
            const firstChar = String.fromCodePoint(next.codePointAt(0) as number);
            assert.ok(units + unitsOf(firstChar, c.encoding) > limit, `part ${i} was cut early`);
            const lastUnit = part.charCodeAt(part.length - 1);
            const nextUnit = next.charCodeAt(0);
            assert.ok(!(lastUnit >= 0xd800 && lastUnit <= 0xdbff && nextUnit >= 0xdc00 && nextUnit <= 0xdfff));
          }
        });
        assert.equal(total, c.units);
        assert.equal(c.remainingInSegment, limit - unitsOf(parts[parts.length - 1] as string, c.encoding));
      }),
      { numRuns: 500 },
    );
  });
});
