/**
 * Run by `npm test` after the whole suite (not found as a *.test.ts file): greps every log line
 * the run wrote (the test runner's own output, every unit and script process the tests started,
 * every in-process unit's log at debug level) for each personal value the tests created
 * (test/support/personal.ts), and for anything shaped like a Korean mobile number or an e-mail
 * address. Findings are reported by file, line and kind, with the value masked.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";

const dir = process.env.TEST_LOG_DIR ?? "";

/** Addresses the tests and services use that are nobody's: operators' logins, fixtures. */
const NOT_PERSONAL_MAIL = /@(telco\.local|example\.(com|org|net)|localhost)$/i;
const PHONE_SHAPE = /^(?:\+?82-?1[016789]|01[016789])-?\d{3,4}-?\d{4}$/;
const MAIL_SHAPE = /^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$/;

const mask = (v: string) => `${[...v].slice(0, 2).join("")}${"*".repeat(Math.max(3, [...v].length - 2))}`;

function logFiles(d: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(d)) {
    const p = join(d, name);
    if (statSync(p).isDirectory()) out.push(...logFiles(p));
    else if (name.endsWith(".log")) out.push(p);
  }
  return out;
}

describe("personal data in the logs of the whole test run", () => {
  it("finds none of the values the tests created, and nothing shaped like a phone number or e-mail address", () => {
    assert.ok(dir, "TEST_LOG_DIR is set by `npm test`, which runs this after the suite");
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
        for (const raw of line.split(/[^A-Za-z0-9.@_+%-]+/)) {
          const token = raw.replace(/^[.+-]+|[.-]+$/g, "");
          if (token.length < 3) continue;
          if (ascii.has(token) || ascii.has(token.toLowerCase()))
            findings.push(`${where}: created value ${mask(token)}`);
          else if (DATE.test(token) && ascii.has(token.slice(0, 10)))
            findings.push(`${where}: created birth date ${mask(token)}`);
          else if (PHONE_SHAPE.test(token)) findings.push(`${where}: a phone number ${mask(token)}`);
          else if (MAIL_SHAPE.test(token) && !NOT_PERSONAL_MAIL.test(token))
            findings.push(`${where}: an e-mail address ${mask(token)}`);
        }
      }
    }
    console.log(
      `scanned ${lines} log lines (${(bytes / 1e6).toFixed(1)} MB) in ${files.length} files for ${values.size} personal values`,
    );
    assert.ok(values.size >= 100, `the tests registered ${values.size} personal values`);
    assert.ok(
      files.length >= 20 && lines >= 1_000,
      `${files.length} log files, ${lines} lines: the run's logs are there`,
    );
    assert.deepEqual(findings.slice(0, 50), [], `${findings.length} findings`);
  });
});
