/**
 * The seed (scripts/seed.ts) on the real test database: it creates the lines it was asked for with
 * their customers and numbers, every line has exactly one open plan period, some changed plan in
 * the middle of last month, a rerun adds nothing, and no generated personal value is stored in clear.
 * The run is marked with its own tag and removed afterwards, so other tests never see it.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { migrateAll } from "../../../scripts/migrate.js";
import { customersFor, firstLineOf, numberOfLine, personFor, seed } from "../../../scripts/seed.js";
import { TEST_DATABASE_URL } from "../../../test/support/env.js";
import { personal, personalPhone } from "../../../test/support/personal.js";
import { testPii } from "../../../test/support/units.js";
import { createKnex, type Knex } from "../../kit/src/postgres.js";

const LINES = 2_000;
const tag = `seedtest-${randomUUID().slice(0, 8)}`;
const knex = createKnex({ url: TEST_DATABASE_URL, schema: "domain", poolMax: 2 });
const quiet = () => {};

/** The lines of this run's customers. */
const seededLines = () =>
  knex("subscriptions as s")
    .join("customers as c", "c.customer_id", "s.customer_id")
    .where("c.create_request_id", "like", `${tag}:%`);

const PERSONAL_TABLES = ["customers", "numbers", "subscriptions"] as const;

/**
 * How many rows of `table` hold `value` in clear in any column. A bytea column is searched for the
 * value's UTF-8 bytes (its text form is hex, where the value never shows); every other column as
 * text.
 */
async function rowsHolding(db: Knex, table: string, value: string): Promise<number> {
  const columns = (await db("information_schema.columns")
    .where({ table_schema: "domain", table_name: table })
    .select("column_name", "data_type")) as { column_name: string; data_type: string }[];
  assert.ok(columns.length > 0, `table ${table} has columns`);
  const where = columns
    .map((c) =>
      c.data_type === "bytea" ? "position(convert_to(?, 'UTF8') in t.??) > 0" : "position(? in t.??::text) > 0",
    )
    .join(" or ");
  const { rows } = await db.raw(`select count(*)::int as n from ?? t where ${where}`, [
    `domain.${table}`,
    ...columns.flatMap((c) => [value, c.column_name]),
  ]);
  return rows[0].n;
}

before(async () => {
  await migrateAll(TEST_DATABASE_URL, ["domain"], quiet);
});

after(async () => {
  const lines = seededLines().select("s.subscription_id");
  const numbers = seededLines().select("s.number_id");
  await knex.transaction(async (trx) => {
    for (const table of [
      "subscription_plan",
      "subscription_vas",
      "subscription_discount",
      "subscription_status_history",
      "micro_payments",
    ])
      await trx(table).whereIn("subscription_id", lines.clone().transacting(trx)).delete();
    const ids = (await numbers.clone().transacting(trx)).map((r: { number_id: string }) => r.number_id);
    await trx("subscriptions").whereIn("number_id", ids).delete();
    await trx("numbers").whereIn("number_id", ids).delete();
    await trx("customers").where("create_request_id", "like", `${tag}:%`).delete();
  });
  await knex.destroy();
});

describe("seed", () => {
  it("creates the lines asked for, in batches, and a rerun adds nothing", async () => {
    for (let k = 0; k < customersFor(LINES); k++) {
      const p = personFor(k);
      personal(p.name);
      personalPhone(p.phone);
      personal(p.birthDate);
      if (p.email) personal(p.email);
    }
    const first = await seed({
      url: TEST_DATABASE_URL,
      pii: testPii,
      lines: LINES,
      tag,
      batchCustomers: 500,
      log: quiet,
    });
    assert.equal(first.lines, LINES);
    assert.equal(first.customers, customersFor(LINES));
    assert.ok(first.databaseBytes > 0);
    const again = await seed({
      url: TEST_DATABASE_URL,
      pii: testPii,
      lines: LINES,
      tag,
      batchCustomers: 500,
      log: quiet,
    });
    assert.equal(again.lines, 0, "idempotent: every batch is already there");

    const [counts] = (await seededLines().select(
      knex.raw("count(*)::int as lines"),
      knex.raw("count(distinct s.customer_id)::int as customers"),
      knex.raw("count(distinct s.number_id)::int as numbers"),
    )) as { lines: number; customers: number; numbers: number }[];
    assert.deepEqual(counts, { lines: LINES, customers: customersFor(LINES), numbers: LINES });
    const statuses = await knex("numbers")
      .whereIn("number_id", seededLines().select("s.number_id"))
      .distinct("status")
      .pluck("status");
    assert.deepEqual(statuses, ["assigned"]);
  });

  it("gives every line exactly one open plan period, and some a plan change in the middle of last month", async () => {
    const periods = await knex("subscription_plan as p")
      .whereIn("p.subscription_id", seededLines().select("s.subscription_id"))
      .groupBy("p.subscription_id")
      .select(
        "p.subscription_id",
        knex.raw("count(*) filter (where upper_inf(p.valid))::int as open"),
        knex.raw("count(*)::int as rows"),
      );
    assert.equal(periods.length, LINES);
    assert.deepEqual(
      periods.filter((p: { open: number }) => p.open !== 1),
      [],
    );
    const changed = periods.filter((p: { rows: number }) => p.rows === 2).length;
    assert.ok(changed > LINES * 0.05 && changed < LINES * 0.2, `${changed} lines changed plan`);
    const vas = await knex("subscription_vas")
      .whereIn("subscription_id", seededLines().select("s.subscription_id"))
      .count({ n: "*" });
    const discounts = await knex("subscription_discount")
      .whereIn("subscription_id", seededLines().select("s.subscription_id"))
      .count({ n: "*" });
    assert.ok(Number(vas[0]?.n) > 0 && Number(discounts[0]?.n) > 0);
  });

  it("would notice a personal value stored in clear, in a bytea column or a text one", async () => {
    const p = personFor(0);
    const id = (
      await knex("customers")
        .where("create_request_id", `${tag}:${"0".repeat(10)}`)
        .first()
    )?.customer_id;
    assert.ok(id, "customer 0 seeded");
    const planted = new Error("rolled back");
    await assert.rejects(
      knex.transaction(async (trx) => {
        assert.equal(await rowsHolding(trx, "customers", p.name), 0);
        await trx("customers")
          .where({ customer_id: id })
          .update({ name_sealed: Buffer.from(`x${p.name}y`, "utf8") });
        assert.equal(await rowsHolding(trx, "customers", p.name), 1, "a clear value in a bytea column");
        await trx("customers").where({ customer_id: id }).update({ name_masked: p.phone });
        assert.equal(await rowsHolding(trx, "customers", p.phone), 1, "a clear value in a text column");
        throw planted;
      }),
      (e) => e === planted,
    );
  });

  it("stores no personal value in clear, and seals them with the unit's keys", async () => {
    for (const k of [0, 1, 9, 777, customersFor(LINES) - 1]) {
      const p = personFor(k);
      const values = [p.name, p.phone, p.birthDate, ...(p.email ? [p.email] : []), numberOfLine(firstLineOf(k))];
      for (const value of values) {
        for (const table of PERSONAL_TABLES) {
          const n = await rowsHolding(knex, table, value);
          assert.equal(n, 0, `a personal value of customer ${k} is in clear in ${table}`);
        }
      }
      const row = await knex("customers")
        .where("create_request_id", `${tag}:${String(k).padStart(10, "0")}`)
        .first();
      assert.ok(row, `customer ${k} seeded`);
      assert.equal(testPii.open(row.name_sealed, "customers.name"), p.name);
      assert.equal(testPii.open(row.phone_sealed, "customers.phone"), p.phone);
      assert.ok(testPii.blindIndex("phone", p.phone).equals(row.phone_index), "phone searchable by its blind index");
      assert.match(p.name, /^[가-힣]{2,5}$/);
      assert.match(p.phone, /^010\d{8}$/);
    }
  });
});
