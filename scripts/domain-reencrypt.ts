/**
 * Moves every sealed personal value (customers, line numbers) to the active key, so an old key
 * can leave the ring. Runs next to the live services, in short batches:
 *   1. add the new key to DOMAIN_PII_KEYS and make it DOMAIN_PII_ACTIVE_KEY; roll the domain unit
 *   2. npm run domain:reencrypt        (DATABASE_URL, DOMAIN_PII_* from the environment,
 *                                       else ~/.config/telco-platform/dev-keys.env; --batch-size N, default 1000)
 *   3. when it reports nothing left, remove the old key from DOMAIN_PII_KEYS; roll again
 * Exit status 1 when rows remain on another key (unknown to the ring, locked, or failing to open).
 */
import { parseArgs } from "node:util";
import { parseKeyRing } from "../services/domain/src/pii/cipher.js";
import { reencrypt } from "../services/domain/src/pii/reencrypt.js";
import { redactUrl } from "../services/kit/src/config.js";
import { createKnex } from "../services/kit/src/postgres.js";
// @ts-expect-error: a plain .mjs helper shared with the start script
import { devKeys } from "./lib/dev-keys.mjs";

function fail(message: string): never {
  process.stderr.write(`domain:reencrypt: ${message}\n`);
  process.exit(2);
}

const { values } = parseArgs({ options: { "batch-size": { type: "string" } } });
const batchSize = Number(values["batch-size"] ?? 1_000);
if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 100_000) fail("--batch-size must be 1..100000");

const env: Record<string, string | undefined> = process.env.DOMAIN_PII_KEYS
  ? process.env
  : { ...(devKeys(() => {}) as Record<string, string>), ...process.env };
let ring: ReturnType<typeof parseKeyRing>;
try {
  ring = parseKeyRing(env.DOMAIN_PII_KEYS ?? "", env.DOMAIN_PII_ACTIVE_KEY ?? "", env.DOMAIN_BLIND_INDEX_KEY ?? "");
} catch (e) {
  fail(`DOMAIN_PII_KEYS / DOMAIN_PII_ACTIVE_KEY / DOMAIN_BLIND_INDEX_KEY: ${(e as Error).message}`);
}

const url = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/telco";
const knex = createKnex({ url, schema: "domain", poolMax: 2, applicationName: "domain-reencrypt" });
const started = Date.now();
process.stdout.write(
  `[reencrypt] ${redactUrl(url)}: moving rows to key ${ring.activeKeyId} (ring: ${[...ring.keys.keys()].join(", ")})\n`,
);
try {
  let lastPrint = 0;
  const result = await reencrypt(knex, ring, {
    batchSize,
    onProgress: ({ table, done, total }) => {
      if (Date.now() - lastPrint < 1_000 && done < total) return;
      lastPrint = Date.now();
      process.stdout.write(`[reencrypt] ${table}: ${done}/${total}\n`);
    },
  });
  for (const [table, n] of Object.entries(result.moved))
    process.stdout.write(`[reencrypt] ${table}: ${n} rows moved\n`);
  for (const f of result.failed) process.stderr.write(`[reencrypt] ${f.table} ${f.id}: does not open (altered?)\n`);
  for (const r of result.remaining)
    process.stderr.write(`[reencrypt] ${r.table}: ${r.rows} rows still on key ${r.keyId}\n`);
  process.stdout.write(`[reencrypt] done in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  process.exitCode = result.remaining.length > 0 ? 1 : 0;
} finally {
  await knex.destroy();
}
