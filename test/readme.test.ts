/** The README is the operator's manual: every setting a unit reads is documented there. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { spec as batch } from "../services/batch/src/config.js";
import { spec as domain } from "../services/domain/src/config.js";
import { spec as message } from "../services/message/src/config.js";
import { spec as usage } from "../services/usage/src/config.js";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

describe("README", () => {
  it("documents every environment variable the units read", () => {
    const missing = [...new Set([usage, message, domain, batch].flatMap((s) => Object.keys(s)))].filter(
      (name) => !readme.includes(`\`${name}\``),
    );
    assert.deepEqual(missing, [], `add these to the README's configuration table: ${missing.join(", ")}`);
  });

  it("shows the two commands", () => {
    assert.match(readme, /^npm start\b/m);
    assert.match(readme, /^npm test\b/m);
  });
});
