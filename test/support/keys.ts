import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { KeyRing } from "../../services/domain/src/pii/cipher.js";

/**
 * The personal-data keys of the test database. Every test process on this machine uses the same
 * ones (kept in .data/test-keys.json, git-ignored, made on first use), so rows one test file
 * sealed open in the next; `npm test` also starts each run on a fresh telco_test database.
 */
const FILE = fileURLToPath(new URL("../../.data/test-keys.json", import.meta.url));

function load(): { pii: string; blind: string } {
  if (existsSync(FILE)) return JSON.parse(readFileSync(FILE, "utf8")) as { pii: string; blind: string };
  const keys = { pii: randomBytes(32).toString("base64"), blind: randomBytes(32).toString("base64") };
  mkdirSync(fileURLToPath(new URL("../../.data", import.meta.url)), { recursive: true });
  // wx: when two test processes race to create it, the second reads the first's keys.
  try {
    writeFileSync(FILE, JSON.stringify(keys), { flag: "wx", mode: 0o600 });
    return keys;
  } catch {
    return JSON.parse(readFileSync(FILE, "utf8")) as { pii: string; blind: string };
  }
}

const keys = load();

export const TEST_KEY_ID = "t1";

export function testKeyRing(): KeyRing {
  return {
    keys: new Map([[TEST_KEY_ID, Buffer.from(keys.pii, "base64")]]),
    activeKeyId: TEST_KEY_ID,
    blindIndexKey: Buffer.from(keys.blind, "base64"),
  };
}

/** The same keys as the domain unit's environment variables. */
export const TEST_PII_ENV = {
  DOMAIN_PII_KEYS: `${TEST_KEY_ID}:${keys.pii}`,
  DOMAIN_PII_ACTIVE_KEY: TEST_KEY_ID,
  DOMAIN_BLIND_INDEX_KEY: keys.blind,
};
