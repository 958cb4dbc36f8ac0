import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { createLogger } from "../src/logger.js";

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { lines, logger: createLogger({ unit: "test", destination }) };
}

describe("JSON logs", () => {
  it("writes one JSON object per line with unit, level and message", () => {
    const { lines, logger } = capture();
    logger.info({ subscriptionId: "L-1" }, "hello");
    const entry = JSON.parse(lines[0] ?? "{}") as Record<string, unknown>;
    assert.equal(entry.unit, "test");
    assert.equal(entry.level, "info");
    assert.equal(entry.msg, "hello");
    assert.equal(entry.subscriptionId, "L-1", "ids are not personal data and stay readable");
  });

  it("redacts personal fields wherever a careless call puts them", () => {
    const { lines, logger } = capture();
    logger.warn(
      {
        phoneNumber: "010-1234-5678",
        customer: { name: "홍길동", email: "hong@example.kr", birthDate: "1990-01-01" },
        request: { message: { to: "01012345678", variables: { user_name: "홍길동" } } },
        deeper: { a: { b: { msisdn: "821012345678" } } },
      },
      "careless",
    );
    const out = lines.join("");
    for (const value of ["010-1234-5678", "홍길동", "hong@example.kr", "1990-01-01", "01012345678", "821012345678"]) {
      assert.ok(!out.includes(value), `${value} leaked: ${out}`);
    }
    assert.match(out, /\[redacted\]/);
  });
});
