import type { Knex } from "knex";
import { SEAL_CONTEXT } from "../store/customer-store.js";
import { type KeyRing, PiiCipher, PiiError } from "./cipher.js";

/**
 * Key rotation without downtime: the services run with the ring "old,new" and the new key
 * active (new values are sealed with it, old ones still open), then this moves every row still
 * sealed with an old key to the active one, batch by batch, each batch one short transaction.
 * Rows locked by a running update are skipped (that update seals them with the active key
 * anyway); a second run picks up whatever is left. Once nothing is left, the old key can leave
 * the ring. The blind-index key is not rotated here, so search keeps working throughout.
 */

interface SealedTable {
  table: string;
  /** The primary key; batches walk it in order (keyset), so every row is visited once per run. */
  pk: string;
  /** Sealed column → its context. */
  columns: Record<string, string>;
}

export const SEALED_TABLES: readonly SealedTable[] = [
  {
    table: "domain.customers",
    pk: "customer_id",
    columns: {
      name_sealed: SEAL_CONTEXT.name,
      phone_sealed: SEAL_CONTEXT.phone,
      email_sealed: SEAL_CONTEXT.email,
      birth_date_sealed: SEAL_CONTEXT.birthDate,
    },
  },
  { table: "domain.numbers", pk: "number_id", columns: { number_sealed: SEAL_CONTEXT.number } },
];

export interface ReencryptProgress {
  table: string;
  done: number;
  total: number;
}

export interface ReencryptResult {
  /** Rows moved to the active key, per table. */
  moved: Record<string, number>;
  /** Rows that did not open (altered, or a wrong key under a right id): their ids, never their values. */
  failed: { table: string; id: string }[];
  /** Rows still not on the active key after this run, per table and key id (unknown keys, locked rows, failures). */
  remaining: { table: string; keyId: string; rows: number }[];
}

export async function reencrypt(
  knex: Knex,
  ring: KeyRing,
  opts: { batchSize?: number; onProgress?: (p: ReencryptProgress) => void } = {},
): Promise<ReencryptResult> {
  const batchSize = opts.batchSize ?? 1_000;
  const pii = new PiiCipher(ring);
  const active = ring.activeKeyId;
  // Only rows this ring can open: a row under an unknown key is reported, not touched.
  const old = [...ring.keys.keys()].filter((id) => id !== active);
  const result: ReencryptResult = { moved: {}, failed: [], remaining: [] };

  for (const t of SEALED_TABLES) {
    const cols = Object.keys(t.columns);
    const [counted] = (await knex(t.table).whereIn("key_id", old).count({ n: "*" })) as { n: string | number }[];
    const total = Number(counted?.n ?? 0);
    let done = 0;
    let cursor: string | undefined;
    for (;;) {
      const batch = await knex.transaction(async (trx) => {
        const q = trx(t.table)
          .select(t.pk, ...cols)
          .whereIn("key_id", old)
          .orderBy(t.pk)
          .limit(batchSize)
          .forUpdate()
          .skipLocked();
        if (cursor !== undefined) q.where(t.pk, ">", cursor);
        const rows = (await q) as Record<string, unknown>[];
        for (const row of rows) {
          const id = String(row[t.pk]);
          const update: Record<string, Buffer | string> = { key_id: active };
          try {
            for (const c of cols) {
              const sealed = row[c] as Buffer | null;
              if (sealed) update[c] = pii.seal(pii.open(sealed, t.columns[c] as string), t.columns[c] as string);
            }
          } catch (e) {
            if (!(e instanceof PiiError)) throw e;
            result.failed.push({ table: t.table, id });
            continue;
          }
          await trx(t.table)
            .where(t.pk, row[t.pk] as string)
            .update(update);
        }
        return rows;
      });
      if (batch.length === 0) break;
      cursor = String(batch[batch.length - 1]?.[t.pk]);
      done += batch.length;
      opts.onProgress?.({ table: t.table, done, total: Math.max(total, done) });
    }
    result.moved[t.table] = done - result.failed.filter((f) => f.table === t.table).length;
    const left = (await knex(t.table)
      .whereNot("key_id", active)
      .groupBy("key_id")
      .select("key_id")
      .count({ n: "*" })) as { key_id: string; n: string | number }[];
    for (const l of left) result.remaining.push({ table: t.table, keyId: l.key_id, rows: Number(l.n) });
  }
  return result;
}
