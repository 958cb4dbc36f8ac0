import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";

/** Awaits a call that must fail with `code`; returns the error for further checks. */
export async function rejects(p: Promise<unknown>, code: Code): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    const ce = ConnectError.from(e);
    assert.equal(ce.code, code, `expected ${Code[code]}, got ${Code[ce.code]}: ${ce.message}`);
    return ce;
  }
  assert.fail(`expected ${Code[code]}, but the call succeeded`);
}
