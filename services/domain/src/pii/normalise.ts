/** Canonical forms for blind indexes, and masks for display. Errors name the field, never the value. */

/** Korean mobile numbers: "010-1234-5678", "01012345678", "+82 10 1234 5678" → "01012345678". */
export function normalisePhone(input: string): string | undefined {
  let digits = input.replace(/[\s().-]/g, "");
  if (digits.startsWith("+82")) digits = `0${digits.slice(3)}`;
  else if (digits.startsWith("82") && digits.length === 12) digits = `0${digits.slice(2)}`;
  return /^01[016789]\d{7,8}$/.test(digits) ? digits : undefined;
}

/** "01012345678" → "010-1234-5678" (and the 10-digit older form "011-123-4567"). */
export function formatPhone(digits: string): string {
  return digits.length === 11
    ? `${digits.slice(0, 3)}-${digits.slice(3, 7)}-${digits.slice(7)}`
    : `${digits.slice(0, 3)}-${digits.slice(3, 6)}-${digits.slice(6)}`;
}

export function normaliseEmail(input: string): string | undefined {
  const e = input.trim().toLowerCase();
  return /^[^\s@]{1,64}@[^\s@]{1,251}\.[a-z]{2,}$/.test(e) && e.length <= 254 ? e : undefined;
}

export function normaliseBirthDate(input: string): string | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(input.trim());
  if (!m) return undefined;
  const d = new Date(`${input.trim()}T00:00:00Z`);
  if (Number.isNaN(d.getTime()) || d.toISOString().slice(0, 10) !== input.trim()) return undefined;
  const year = Number(m[1]);
  return year >= 1900 && d.getTime() <= Date.now() ? input.trim() : undefined;
}

export function normaliseName(input: string): string | undefined {
  const n = input.trim().replace(/\s+/g, " ");
  return n.length >= 1 && n.length <= 100 ? n : undefined;
}

/** "홍길동" → "홍*동", "김철" → "김*", "Jane Doe" → "J******e"; the first character stays searchable. */
export function maskName(name: string): string {
  const chars = [...name];
  if (chars.length <= 1) return "*";
  if (chars.length === 2) return `${chars[0]}*`;
  return `${chars[0]}${"*".repeat(chars.length - 2)}${chars[chars.length - 1]}`;
}

/** "01012345678" → "010-****-5678". */
export function maskPhone(digits: string): string {
  return `${digits.slice(0, 3)}-****-${digits.slice(-4)}`;
}

/** "hong.gildong@example.kr" → "h***@example.kr". */
export function maskEmail(email: string): string {
  const at = email.indexOf("@");
  return `${email.slice(0, 1)}***${email.slice(at)}`;
}

/** "1990-01-15" → "1990-**-**". */
export function maskBirthDate(date: string): string {
  return `${date.slice(0, 4)}-**-**`;
}
