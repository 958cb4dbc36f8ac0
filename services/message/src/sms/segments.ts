/**
 * How a handset and an SMSC count and split an SMS text (3GPP TS 23.038 / 23.040).
 *
 * A text that uses only the GSM 03.38 default alphabet (basic table plus its extension table) goes
 * as GSM-7: 160 septets in one SMS, 153 per part when concatenated (the user data header takes the
 * other 7). An extension character is an escape (0x1B) plus a second septet, so it counts 2, and
 * the two septets must travel in the same part. Any other character makes the whole text UCS-2
 * (UTF-16 in practice): 70 units in one SMS, 67 per part; a character outside the BMP (an emoji)
 * is a surrogate pair, 2 units, never split across parts.
 *
 * The national language shift tables (Turkish, Spanish, Portuguese, Indian languages) are not
 * used: Korean handsets and SMSCs fall back to UCS-2 for anything outside the default alphabet.
 */

export type SmsEncodingName = "gsm7" | "ucs2";

export const SMS_LIMITS = {
  gsm7: { single: 160, part: 153 },
  ucs2: { single: 70, part: 67 },
} as const;

export const DEFAULT_MAX_SEGMENTS = 10;

/** GSM 03.38 basic table, in code order (0x1B, the escape, is left out: it is not a character of a text). */
const GSM_BASIC = new Set(
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà",
);
/** The extension table: each is sent as ESC + one septet. */
const GSM_EXTENSION = new Set("\f^{}\\[~]|€");

export interface SmsCount {
  encoding: SmsEncodingName;
  /** Septets (GSM-7, extension characters 2) or UTF-16 units (UCS-2, surrogate pairs 2). */
  units: number;
  /** Parts as sent; an empty text is one (empty) SMS, as handsets show "0/160" for it. */
  segments: number;
  /** More than one segment: sent concatenated (LMS). */
  longMessage: boolean;
  /** Units still free in the last segment. */
  remainingInSegment: number;
  maxSegments: number;
  /** segments <= maxSegments: a longer text cannot be sent. */
  fits: boolean;
}

/** GSM-7 septets of one character, or undefined when the character is not in the default alphabet. */
function septets(ch: string): 1 | 2 | undefined {
  if (GSM_BASIC.has(ch)) return 1;
  if (GSM_EXTENSION.has(ch)) return 2;
  return undefined;
}

export function smsEncoding(text: string): SmsEncodingName {
  for (const ch of text) if (septets(ch) === undefined) return "ucs2";
  return "gsm7";
}

interface Layout {
  encoding: SmsEncodingName;
  units: number;
  parts: string[];
  /** The per-SMS limit that applied (single or per part). */
  limit: number;
  lastUnits: number;
}

/**
 * Greedy split by whole characters (code points): a character whose units do not fit in the part
 * starts the next one. Counting segments this way, not as ceil(units / 153), is what a handset
 * does: an escape pair that would straddle a boundary moves whole into the next part and can cost
 * a segment.
 */
function layout(text: string): Layout {
  const encoding = smsEncoding(text);
  const cost = (ch: string): number =>
    encoding === "gsm7" ? (septets(ch) as number) : (ch.codePointAt(0) as number) > 0xffff ? 2 : 1;
  let units = 0;
  for (const ch of text) units += cost(ch);
  const limits = SMS_LIMITS[encoding];
  if (units <= limits.single) return { encoding, units, parts: [text], limit: limits.single, lastUnits: units };

  const parts: string[] = [];
  let current = "";
  let used = 0;
  for (const ch of text) {
    const w = cost(ch);
    if (used + w > limits.part) {
      parts.push(current);
      current = "";
      used = 0;
    }
    current += ch;
    used += w;
  }
  parts.push(current);
  return { encoding, units, parts, limit: limits.part, lastUnits: used };
}

/** Encoding, units and segments of a text as a handset counts them, against the configured maximum. */
export function countSms(text: string, maxSegments: number = DEFAULT_MAX_SEGMENTS): SmsCount {
  const l = layout(text);
  const segments = l.parts.length;
  return {
    encoding: l.encoding,
    units: l.units,
    segments,
    longMessage: segments > 1,
    remainingInSegment: l.limit - l.lastUnits,
    maxSegments,
    fits: segments <= maxSegments,
  };
}

/**
 * The parts of a text as they are sent concatenated (one part when it fits one SMS); joined they
 * are the text. No part ends inside a surrogate pair or a GSM escape sequence.
 */
export function splitSms(text: string): string[] {
  return layout(text).parts;
}
