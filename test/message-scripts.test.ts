/**
 * The message benchmark's short smoke run: it ends with its JSON line, every request submitted
 * once at the SMSC (the figures are the full run's job), and refuses misuse with a readable message.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { run } from "./support/processes.js";

const tsx = (script: string, args: string[], timeoutMs = 240_000) =>
  run(process.execPath, ["--import", "tsx", script, ...args], { env: {}, timeoutMs });

describe("npm run bench:message (smoke run)", () => {
  it("ends with its JSON line: sends per second, latency, the baseline, nothing sent twice", async () => {
    const r = await tsx("scripts/bench-message.ts", ["--messages", "300", "--lines", "5", "--seconds", "2"]);
    assert.equal(r.code, 0, r.stderr.slice(-2000));
    const j = JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as Record<string, unknown>;
    for (const key of ["sends_per_s", "p50_ms", "p99_ms", "baseline_smpp_per_s", "ratio_to_baseline"]) {
      assert.equal(typeof j[key], "number", key);
      assert.ok((j[key] as number) > 0, `${key} = ${j[key]}`);
    }
    assert.equal(j.duplicates_at_smsc, 0);
    assert.ok((j.latency_samples as number) > 0);
  });

  it("explains misuse and exits 2", async () => {
    const r = await tsx("scripts/bench-message.ts", ["--messages", "lots"], 30_000);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^bench:message: --messages must be an integer/m);
  });
});
