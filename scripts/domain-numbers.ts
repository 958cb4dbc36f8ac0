/**
 * Fills the domain unit's number pool with a range of free mobile numbers, sealed and indexed:
 *   npm run domain:numbers -- --from 01020000000 --count 100000 [--batch-size 5000]
 * DATABASE_URL and DOMAIN_PII_* from the environment, else ~/.config/telco-platform/dev-keys.env. Numbers already
 * in the pool are skipped, so an interrupted run can be repeated as it was.
 */
import { parseArgs } from "node:util";
import { PiiCipher, parseKeyRing } from "../services/domain/src/pii/cipher.js";
import { addNumbers, nthNumber } from "../services/domain/src/store/number-pool.js";
import { redactUrl } from "../services/kit/src/config.js";
import { createKnex } from "../services/kit/src/postgres.js";
// @ts-expect-error: a plain .mjs helper shared with the start script
import { devKeys } from "./lib/dev-keys.mjs";

const USAGE = "usage: npm run domain:numbers -- --from 010XXXXXXXX --count N [--batch-size N]";

function fail(message: string): never {
  process.stderr.write(`domain:numbers: ${message}\n${USAGE}\n`);
  process.exit(2);
}

let values: { from?: string; count?: string; "batch-size"?: string };
try {
  ({ values } = parseArgs({
    options: { from: { type: "string" }, count: { type: "string" }, "batch-size": { type: "string" } },
  }));
} catch (e) {
  fail((e as Error).message);
}
const from = (values.from ?? "").replace(/-/g, "");
if (!/^010\d{8}$/.test(from)) fail("--from: an 11-digit 010 number, e.g. 01020000000");
const count = Number(values.count);
if (!Number.isInteger(count) || count < 1 || count > 100_000_000) fail("--count: 1..100000000");
if (!nthNumber(from, count - 1)) fail("--from + --count runs past 010-9999-9999");
const batchSize = Number(values["batch-size"] ?? 5_000);
if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 20_000) fail("--batch-size: 1..20000");

const env: Record<string, string | undefined> = process.env.DOMAIN_PII_KEYS
  ? process.env
  : { ...(devKeys(() => {}) as Record<string, string>), ...process.env };
let pii: PiiCipher;
try {
  pii = new PiiCipher(
    parseKeyRing(env.DOMAIN_PII_KEYS ?? "", env.DOMAIN_PII_ACTIVE_KEY ?? "", env.DOMAIN_BLIND_INDEX_KEY ?? ""),
  );
} catch (e) {
  fail(`DOMAIN_PII_KEYS / DOMAIN_PII_ACTIVE_KEY / DOMAIN_BLIND_INDEX_KEY: ${(e as Error).message}`);
}

const url = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/telco";
const knex = createKnex({ url, schema: "domain", poolMax: 1, applicationName: "domain-numbers" });
const started = Date.now();
process.stdout.write(`[numbers] ${redactUrl(url)}: adding ${count} numbers from ${from}\n`);
try {
  let lastPrint = 0;
  const inserted = await addNumbers(knex, pii, {
    from,
    count,
    batchSize,
    onProgress: (done, added) => {
      if (Date.now() - lastPrint < 1_000 && done < count) return;
      lastPrint = Date.now();
      const rate = Math.round(done / Math.max((Date.now() - started) / 1000, 0.001));
      process.stdout.write(`[numbers] ${done}/${count} (${added} new, ${rate}/s)\n`);
    },
  });
  process.stdout.write(
    `[numbers] done in ${((Date.now() - started) / 1000).toFixed(1)} s: ${inserted} added, ${count - inserted} already in the pool\n`,
  );
} catch (e) {
  process.stderr.write(`domain:numbers failed: ${(e as Error).message}\n`);
  process.exitCode = 1;
} finally {
  await knex.destroy();
}
