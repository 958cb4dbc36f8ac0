/**
 * Run by `npm test` after the whole suite (not found as a *.test.ts file): greps every log line
 * the run wrote (the test runner's own output, every unit and script process the tests started,
 * every in-process unit's log at debug level, RPC access lines included) for each personal value
 * the tests created (test/support/personal.ts), and for anything shaped like a Korean mobile
 * number or an e-mail address (test/support/log-scan.ts, itself tested in test/log-scan.test.ts).
 * Findings are reported by file, line and kind, with the value masked.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { scanLogs } from "../support/log-scan.js";

const dir = process.env.TEST_LOG_DIR ?? "";

describe("personal data in the logs of the whole test run", () => {
  it("finds none of the values the tests created, and nothing shaped like a phone number or e-mail address", () => {
    assert.ok(dir, "TEST_LOG_DIR is set by `npm test`, which runs this after the suite");
    const r = scanLogs(dir);
    console.log(
      `scanned ${r.lines} log lines (${(r.bytes / 1e6).toFixed(1)} MB) in ${r.files} files for ${r.values} personal values`,
    );
    assert.ok(r.values >= 100, `the tests registered ${r.values} personal values`);
    assert.ok(r.files >= 20 && r.lines >= 1_000, `${r.files} log files, ${r.lines} lines: the run's logs are there`);
    assert.deepEqual(r.findings.slice(0, 50), [], `${r.findings.length} findings`);
  });
});
