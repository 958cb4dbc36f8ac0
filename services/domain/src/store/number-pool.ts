import type { Knex } from "knex";
import type { PiiCipher } from "../pii/cipher.js";

/**
 * The carrier's number inventory. Numbers are personal data once assigned, so they are stored
 * sealed (context "numbers.number") with a blind index for exact lookup and uniqueness.
 */

export const NUMBER_CONTEXT = "numbers.number";
export const NUMBER_INDEX_KIND = "number";

/** "01020000000" + n → the n-th following mobile number, or undefined past 010-9999-9999. */
export function nthNumber(from: string, n: number): string | undefined {
  const next = BigInt(from) + BigInt(n);
  const digits = `0${next.toString()}`;
  return /^010\d{8}$/.test(digits) ? digits : undefined;
}

export interface AddNumbersOptions {
  /** First number, 11 digits "010XXXXXXXX". */
  from: string;
  count: number;
  batchSize?: number;
  onProgress?: (done: number, inserted: number) => void;
}

/**
 * Adds a range of numbers to the pool as free, in multi-row batches of one statement each.
 * A number already in the pool (same blind index) is left as it is, so ranges may overlap
 * and a run that was interrupted can simply be repeated. Returns how many were new.
 */
export async function addNumbers(knex: Knex, pii: PiiCipher, o: AddNumbersOptions): Promise<number> {
  if (!/^010\d{8}$/.test(o.from)) throw new Error("from must be an 11-digit 010 number, e.g. 01020000000");
  if (!nthNumber(o.from, Math.max(o.count - 1, 0))) throw new Error("the range runs past 010-9999-9999");
  const batchSize = o.batchSize ?? 5_000;
  let inserted = 0;
  for (let done = 0; done < o.count; ) {
    const n = Math.min(batchSize, o.count - done);
    const rows = Array.from({ length: n }, (_, i) => {
      const digits = nthNumber(o.from, done + i) as string;
      return {
        number_sealed: pii.seal(digits, NUMBER_CONTEXT),
        number_index: pii.blindIndex(NUMBER_INDEX_KIND, digits),
        status: "free",
        key_id: pii.activeKeyId,
      };
    });
    const result = (await knex("domain.numbers")
      .insert(rows)
      .onConflict("number_index")
      .ignore()
      .returning("number_id")) as unknown[];
    inserted += result.length;
    done += n;
    o.onProgress?.(done, inserted);
  }
  return inserted;
}

export type NumberSourceName = "returned" | "allocated";

/**
 * Takes a number for a new line of `customerId`, locking its row until the transaction ends:
 * first the customer's own number if it is still held for them, else a free one. A number whose
 * hold has lapsed counts as free. SKIP LOCKED lets parallel activations each take a different
 * row at once rather than queueing on (or retrying after) the same one.
 */
export async function takeNumber(
  trx: Knex.Transaction,
  customerId: string,
): Promise<{ numberId: string; source: NumberSourceName } | undefined> {
  const own = await trx.raw<{ rows: { number_id: string }[] }>(
    `select number_id from domain.numbers
      where status = 'held' and held_for = ? and held_until > now()
      order by held_until desc limit 1 for update skip locked`,
    [customerId],
  );
  const ownId = own.rows[0]?.number_id;
  if (ownId) {
    await assign(trx, ownId);
    return { numberId: ownId, source: "returned" };
  }
  for (const where of ["status = 'free'", "status = 'held' and held_until <= now()"]) {
    const free = await trx.raw<{ rows: { number_id: string }[] }>(
      `select number_id from domain.numbers where ${where} order by number_id limit 1 for update skip locked`,
    );
    const id = free.rows[0]?.number_id;
    if (id) {
      await assign(trx, id);
      return { numberId: id, source: "allocated" };
    }
  }
  return undefined;
}

async function assign(trx: Knex.Transaction, numberId: string): Promise<void> {
  await trx("domain.numbers")
    .where({ number_id: numberId })
    .update({ status: "assigned", held_for: null, held_until: null });
}

/** Holds a terminated line's number for its customer until now + `days`. */
export async function holdNumber(
  trx: Knex.Transaction,
  numberId: string,
  customerId: string,
  days: number,
): Promise<void> {
  await trx.raw(
    `update domain.numbers set status = 'held', held_for = ?, held_until = now() + make_interval(days => ?)
      where number_id = ?`,
    [customerId, days, numberId],
  );
}
