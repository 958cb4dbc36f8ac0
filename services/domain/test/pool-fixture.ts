import { randomInt } from "node:crypto";
import { testPii } from "../../../test/support/units.js";
import type { Knex } from "../../kit/src/postgres.js";
import { addNumbers } from "../src/store/number-pool.js";

/** A customer written directly (these tests are about lines, not customers). */
export async function newCustomer(knex: Knex): Promise<string> {
  const phone = `010${String(randomInt(0, 100_000_000)).padStart(8, "0")}`;
  const [c] = await knex("domain.customers")
    .insert({
      name_sealed: testPii.seal("김회선", "customers.name"),
      name_masked: "김*선",
      phone_sealed: testPii.seal(phone, "customers.phone"),
      phone_index: testPii.blindIndex("phone", phone),
      birth_date_sealed: testPii.seal("1985-03-02", "customers.birth_date"),
      key_id: testPii.activeKeyId,
    })
    .returning<{ customer_id: string }[]>("customer_id");
  return (c as { customer_id: string }).customer_id;
}

/**
 * Numbers left in the test database by earlier runs are sealed with other (random) test keys,
 * which this process cannot open. Takes them out of circulation (unreferenced ones deleted, the
 * rest held for their last customer for ever) and adds `count` fresh numbers from a random range.
 */
export async function ownPool(knex: Knex, count: number): Promise<void> {
  await knex.raw(`delete from domain.numbers n where n.status <> 'assigned'
    and not exists (select 1 from domain.subscriptions s where s.number_id = n.number_id)`);
  await knex.raw(`update domain.numbers n set status = 'held', held_until = 'infinity',
      held_for = (select s.customer_id from domain.subscriptions s where s.number_id = n.number_id
                   order by s.activated_at desc limit 1)
    where n.status = 'free' or (n.status = 'held' and n.held_until <= now())`);
  const from = `010${String(randomInt(0, 99_000_000)).padStart(8, "0")}`;
  await addNumbers(knex, testPii, { from, count, batchSize: 250 });
}
