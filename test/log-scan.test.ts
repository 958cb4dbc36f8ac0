/**
 * The post-run personal-data scan (test/support/log-scan.ts) finds what it is for: a created
 * value in any log file, in any case, inside other tokens; phone numbers and e-mail addresses
 * nobody registered; and it lets ids, masked values and the validation errors' examples pass.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { scanLogs } from "./support/log-scan.js";

function logs(values: string[], files: Record<string, string[]>): string {
  const dir = mkdtempSync(join(tmpdir(), "log-scan-"));
  writeFileSync(join(dir, "personal-values.jsonl"), values.map((v) => `${JSON.stringify(v)}\n`).join(""));
  for (const [name, lines] of Object.entries(files)) writeFileSync(join(dir, name), `${lines.join("\n")}\n`);
  return dir;
}

const line = (o: Record<string, unknown>) => JSON.stringify({ level: "info", unit: "domain", ...o });

describe("the personal-data scan of a run's logs", () => {
  it("finds created values and unregistered phone numbers and addresses, masked in its report", () => {
    const dir = logs(["홍길동99", "obs.a1b2@example.kr", "01055512345", "1979-02-03"], {
      "a.log": [
        line({ msg: "customer 홍길동99 created" }),
        line({ msg: "mail to OBS.A1B2@EXAMPLE.KR" }),
        line({ to: "line_01055512345" }),
        line({ birth: "1979-02-03T00:00:00Z" }),
      ],
      "b.log": [line({ msg: "sent to 010-9876-5432" }), line({ msg: "mail for someone@naver.com" })],
    });
    try {
      const r = scanLogs(dir);
      assert.equal(r.files, 2);
      assert.equal(r.lines, 6);
      assert.deepEqual(
        r.findings.map((f) => f.replace(/ \S+$/, "")),
        [
          "a.log:1: created value",
          "a.log:2: created value",
          "a.log:3: created value",
          "a.log:4: created birth date",
          "b.log:1: a phone number",
          "b.log:2: an e-mail address",
        ],
      );
      const report = r.findings.join("\n");
      for (const v of ["홍길동99", "obs.a1b2", "01055512345", "9876-5432", "someone@naver.com"]) {
        assert.ok(!report.toLowerCase().includes(v), `the report masks ${v}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("lets ids, masked values, timestamps and the validation errors' examples pass", () => {
    const dir = logs(["홍길동99", "01055512345"], {
      "c.log": [
        line({ subscription_id: "L0000000042", customer_id: "5f0c6a1e-8d3b-4c1e-9a7e-2b9f0d1c3e4a" }),
        line({ name: "홍*동", phone: "010-****-2345", email: "o***@example.kr" }),
        line({ time: "2026-12-01T22:59:35.957Z", trace_id: "0af7651916cd43dd8448eb211c80319c" }),
        line({
          error: "phone_number: must be a Korean mobile number such as 010-1234-5678; email: such as name@example.kr",
        }),
      ],
    });
    try {
      assert.deepEqual(scanLogs(dir).findings, []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
