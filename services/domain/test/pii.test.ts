/**
 * Personal data at rest (DESIGN.md invariant 6) against the real test database: a fresh IV per
 * value, authenticated ciphertexts bound to their column, and key rotation with re-encryption
 * while search keeps working.
 */

import assert from "node:assert/strict";
import { randomBytes, randomInt } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { migrateAll } from "../../../scripts/migrate.js";
import { TEST_DATABASE_URL } from "../../../test/support/env.js";
import { personal, personalPhone } from "../../../test/support/personal.js";
import { createKnex, type Knex } from "../../kit/src/postgres.js";
import { type KeyRing, PiiCipher, PiiError, randomKeyRing } from "../src/pii/cipher.js";
import { reencrypt } from "../src/pii/reencrypt.js";
import { type CustomerFields, CustomerStore, SEAL_CONTEXT } from "../src/store/customer-store.js";

let knex: Knex;

before(async () => {
  await migrateAll(TEST_DATABASE_URL, ["domain"], () => {});
  knex = createKnex({ url: TEST_DATABASE_URL, schema: "domain", poolMax: 4 });
});
after(async () => {
  await knex?.destroy();
});

/** Key ids unique to this run: other test files seal rows in the same database with their own keys. */
const runId = randomBytes(3).toString("hex");
const phone = () => personalPhone(`010${randomInt(10_000_000, 99_999_999)}`);
const person = (i: number): CustomerFields => ({
  name: personal(`시험${runId}${i}`),
  phone: phone(),
  email: personal(`pii-${runId}-${i}@example.kr`),
  birthDate: `1971-03-0${(i % 9) + 1}`,
});

function flipOneBit(b: Buffer, at = b.length - 1): Buffer {
  const copy = Buffer.from(b);
  copy[at] = (copy[at] as number) ^ 0x01;
  return copy;
}

describe("sealing", () => {
  const pii = new PiiCipher(randomKeyRing([`a${runId}`]));

  it("gives two different ciphertexts for the same value, both opening to it", () => {
    const a = pii.seal("010-1234-5678", SEAL_CONTEXT.phone);
    const b = pii.seal("010-1234-5678", SEAL_CONTEXT.phone);
    assert.notDeepEqual(a, b);
    assert.equal(pii.open(a, SEAL_CONTEXT.phone), "010-1234-5678");
    assert.equal(pii.open(b, SEAL_CONTEXT.phone), "010-1234-5678");
    assert.ok(!a.includes(Buffer.from("1234-5678")), "no clear text inside the sealed value");
  });

  it("refuses a ciphertext with one bit flipped, anywhere in IV, tag or body", () => {
    const sealed = pii.seal("hong@example.kr", SEAL_CONTEXT.email);
    const idLen = sealed[1] as number;
    for (const at of [2 + idLen, 2 + idLen + 12, 2 + idLen + 28, sealed.length - 1]) {
      assert.throws(() => pii.open(flipOneBit(sealed, at), SEAL_CONTEXT.email), PiiError, `bit flipped at ${at}`);
    }
  });

  it("refuses a ciphertext copied into another column", () => {
    const sealed = pii.seal("hong@example.kr", SEAL_CONTEXT.email);
    assert.throws(() => pii.open(sealed, SEAL_CONTEXT.phone), PiiError);
    assert.throws(() => pii.open(sealed, SEAL_CONTEXT.name), PiiError);
  });

  it("refuses, in the database, a row whose value was altered or swapped between columns", async () => {
    const store = new CustomerStore(knex, pii);
    const { row } = await store.create(`tamper-${runId}`, randomBytes(32), person(0));
    assert.equal(store.open(row).email, `pii-${runId}-0@example.kr`);

    await knex("domain.customers")
      .where({ customer_id: row.customer_id })
      .update({ phone_sealed: flipOneBit(row.phone_sealed) });
    const flipped = await store.get(row.customer_id);
    assert.ok(flipped);
    assert.throws(() => store.open(flipped), PiiError);

    await knex("domain.customers").where({ customer_id: row.customer_id }).update({ phone_sealed: row.email_sealed });
    const swapped = await store.get(row.customer_id);
    assert.ok(swapped);
    assert.throws(() => store.open(swapped), PiiError);
    await knex("domain.customers").where({ customer_id: row.customer_id }).delete();
  });
});

describe("key rotation", () => {
  it("moves every row to the new key; they open with the new key alone and search still works", async () => {
    const k1 = `r1${runId}`;
    const k2 = `r2${runId}`;
    const ring1 = randomKeyRing([k1]);
    // Step 1 of a rotation: both keys in the ring, the new one active (same blind-index key).
    const ring2: KeyRing = {
      keys: new Map([...ring1.keys, [k2, randomBytes(32)]]),
      activeKeyId: k2,
      blindIndexKey: ring1.blindIndexKey,
    };
    const ring3: KeyRing = {
      keys: new Map([[k2, ring2.keys.get(k2) as Buffer]]),
      activeKeyId: k2,
      blindIndexKey: ring1.blindIndexKey,
    };
    const before = new CustomerStore(knex, new PiiCipher(ring1));
    const people = Array.from({ length: 5 }, (_, i) => person(i + 1));
    const ids: string[] = [];
    for (const [i, p] of people.entries())
      ids.push((await before.create(`rot-${runId}-${i}`, randomBytes(32), p)).row.customer_id);
    // A number held for the first customer (not free: other tests' activations must not take it).
    const digits = phone();
    const pii1 = new PiiCipher(ring1);
    const [num] = (await knex("domain.numbers")
      .insert({
        number_sealed: pii1.seal(digits, SEAL_CONTEXT.number),
        number_index: pii1.blindIndex("number", digits),
        status: "held",
        held_for: ids[0],
        held_until: new Date(Date.now() + 365 * 86_400_000),
        key_id: k1,
      })
      .returning("number_id")) as { number_id: string }[];

    const progress: number[] = [];
    const result = await reencrypt(knex, ring2, {
      batchSize: 2,
      onProgress: (p) => {
        if (p.table === "domain.customers") progress.push(p.done);
      },
    });
    assert.deepEqual(result.failed, []);
    assert.ok((result.moved["domain.customers"] ?? 0) >= 5);
    assert.ok((result.moved["domain.numbers"] ?? 0) >= 1);
    assert.ok(progress.length >= 3, `progress per batch of 2, got ${progress.join(",")}`);
    assert.equal(result.remaining.filter((r) => r.keyId === k1).length, 0, "no row of this run is left on the old key");

    const rows = await knex("domain.customers").whereIn("customer_id", ids).select("key_id");
    assert.deepEqual(
      rows.map((r) => r.key_id),
      ids.map(() => k2),
    );
    const numberRow = await knex("domain.numbers").where({ number_id: num?.number_id }).first();
    assert.equal(numberRow.key_id, k2);

    // Step 3: the old key leaves the ring; everything still opens, search still finds.
    const pii3 = new PiiCipher(ring3);
    const afterRotation = new CustomerStore(knex, pii3);
    assert.equal(afterRotation.openNumber(numberRow.number_sealed), digits);
    for (const [i, p] of people.entries()) {
      const row = await afterRotation.get(ids[i] as string);
      assert.ok(row);
      const open = afterRotation.open(row);
      assert.deepEqual(
        { ...open, customerId: undefined, createdAt: undefined, updatedAt: undefined },
        {
          ...p,
          customerId: undefined,
          createdAt: undefined,
          updatedAt: undefined,
        },
      );
      for (const c of ["name_sealed", "phone_sealed", "email_sealed", "birth_date_sealed"] as const) {
        assert.equal(pii3.keyIdOf(row[c] as Buffer), k2, c);
      }
      const byPhone = await afterRotation.search({ phone: p.phone }, 10);
      assert.deepEqual(
        byPhone.map((r) => r.customer_id),
        [ids[i]],
      );
      const byEmail = await afterRotation.search({ email: p.email as string }, 10);
      assert.deepEqual(
        byEmail.map((r) => r.customer_id),
        [ids[i]],
      );
    }
    // And the old ring alone no longer opens them.
    const stale = await before.get(ids[0] as string);
    assert.ok(stale);
    assert.throws(() => before.open(stale), PiiError);

    // A second run has nothing left to do for these keys.
    const again = await reencrypt(knex, ring2);
    assert.equal(again.moved["domain.customers"], 0);
  });
});
