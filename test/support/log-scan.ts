import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

/**
 * Addresses that are nobody's (operators' logins, fixtures, the examples validation errors give:
 * "such as name@example.kr"), and the example number those errors give. A test's own values are
 * caught by exact match whatever their domain.
 */
const NOT_PERSONAL_MAIL = /@(telco\.local|example\.(com|org|net|kr)|localhost)$/i;
const EXAMPLE_PHONES = new Set(["010-1234-5678", "01012345678"]);
const PHONE_SHAPE = /^(?:\+?82-?1[016789]|01[016789])-?\d{3,4}-?\d{4}$/;
const MAIL_SHAPE = /^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$/;

export const mask = (v: string) => `${[...v].slice(0, 2).join("")}${"*".repeat(Math.max(3, [...v].length - 2))}`;

export function logFiles(d: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(d)) {
    const p = join(d, name);
    if (statSync(p).isDirectory()) out.push(...logFiles(p));
    else if (name.endsWith(".log")) out.push(p);
  }
  return out;
}

export interface ScanResult {
  values: number;
  files: number;
  lines: number;
  bytes: number;
  /** "file:line: kind masked-value", never the value in clear. */
  findings: string[];
}

/**
 * Greps every *.log file under `dir` for the personal values in dir/personal-values.jsonl (exact
 * tokens, e-mail addresses in any case, a birth date at the start of a timestamp-like token; names
 * and other non-ASCII values as substrings) and for anything shaped like a Korean mobile number or
 * an e-mail address. Linear in the logs' size: lines are split into tokens once.
 */
export function scanLogs(dir: string): ScanResult {
  const values = new Set(
    readFileSync(join(dir, "personal-values.jsonl"), "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as string),
  );
  const ascii = new Set([...values].filter((v) => /^[\x20-\x7e]+$/.test(v)).flatMap((v) => [v, v.toLowerCase()]));
  const wide = [...values].filter((v) => !/^[\x20-\x7e]+$/.test(v));
  const DATE = /^\d{4}-\d{2}-\d{2}/;
  const files = logFiles(dir);
  let lines = 0;
  let bytes = 0;
  const findings: string[] = [];
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    bytes += text.length;
    const rows = text.split("\n");
    for (let i = 0; i < rows.length; i++) {
      const line = rows[i] as string;
      if (line === "") continue;
      lines++;
      const where = `${file.slice(dir.length + 1)}:${i + 1}`;
      if (/[^\x20-\x7e\t]/.test(line)) {
        for (const v of wide) if (line.includes(v)) findings.push(`${where}: created value ${mask(v)}`);
      }
      const raws = line.split(/[^A-Za-z0-9.@_+%-]+/);
      // "line_01012345678", "to%3D01012345678": the parts too.
      for (const raw of raws.flatMap((r) => (/[_%]/.test(r) ? [r, ...r.split(/_|%[0-9A-Fa-f]{2}/)] : [r]))) {
        const token = raw.replace(/^[.+-]+|[.-]+$/g, "");
        if (token.length < 3) continue;
        if (ascii.has(token) || ascii.has(token.toLowerCase())) findings.push(`${where}: created value ${mask(token)}`);
        else if (DATE.test(token) && ascii.has(token.slice(0, 10)))
          findings.push(`${where}: created birth date ${mask(token)}`);
        else if (PHONE_SHAPE.test(token) && !EXAMPLE_PHONES.has(token))
          findings.push(`${where}: a phone number ${mask(token)}`);
        else if (MAIL_SHAPE.test(token) && !NOT_PERSONAL_MAIL.test(token))
          findings.push(`${where}: an e-mail address ${mask(token)}`);
      }
    }
  }
  return { values: values.size, files: files.length, lines, bytes, findings };
}
