import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

/**
 * The personal values tests create (names, phone numbers, e-mail addresses, birth dates), written
 * to TEST_LOG_DIR/personal-values.jsonl as they are made. After a full run, `npm test` greps every
 * log line the run wrote for each of them (test/after-run/no-personal-data-in-logs.test.ts).
 * Returns the value, so a fixture can register what it creates inline.
 */
export function personal<T extends string>(value: T): T {
  const dir = process.env.TEST_LOG_DIR;
  // Too short to tell from other text (a 2-letter name could be anything): not scanned for.
  if (dir && value.length >= (/^\d+$/.test(value) ? 8 : 3)) {
    mkdirSync(dir, { recursive: true });
    appendFileSync(join(dir, "personal-values.jsonl"), `${JSON.stringify(value)}\n`);
  }
  return value;
}

/** A phone number in the forms it could be logged in: as typed, digits only, dashed, international. */
export function personalPhone(phone: string): string {
  const digits = phone.replace(/\D/g, "");
  personal(phone);
  personal(digits);
  if (digits.length === 11) personal(`${digits.slice(0, 3)}-${digits.slice(3, 7)}-${digits.slice(7)}`);
  if (digits.startsWith("0")) personal(`82${digits.slice(1)}`);
  return phone;
}
