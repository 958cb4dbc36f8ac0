import { randomInt } from "node:crypto";
import { testPii } from "../../../test/support/units.js";
import type { Knex } from "../../kit/src/postgres.js";

/** A customer and a line, written directly (these tests are about payments and invoices, not activation). */
export async function makeLine(
  knex: Knex,
  opts: { status?: "active" | "suspended" | "terminated"; limitKrw?: number } = {},
): Promise<string> {
  const status = opts.status ?? "active";
  const phone = `010${String(randomInt(0, 100_000_000)).padStart(8, "0")}`;
  const [customer] = await knex("customers")
    .insert({
      name_sealed: testPii.seal("테스트", "customers.name"),
      name_masked: "테*트",
      phone_sealed: testPii.seal(phone, "customers.phone"),
      phone_index: testPii.blindIndex("phone", phone),
      birth_date_sealed: testPii.seal("1990-01-01", "customers.birth_date"),
      key_id: testPii.activeKeyId,
    })
    .returning<{ customer_id: string }[]>("customer_id");
  const [number] = await knex("numbers")
    .insert({
      number_sealed: testPii.seal(phone, "numbers.number"),
      number_index: testPii.blindIndex("number", phone),
      status: status === "terminated" ? "free" : "assigned",
      key_id: testPii.activeKeyId,
    })
    .returning<{ number_id: string }[]>("number_id");
  const [line] = await knex("subscriptions")
    .insert({
      customer_id: customer?.customer_id,
      number_id: number?.number_id,
      status,
      activated_at: new Date("2025-01-01T00:00:00Z"),
      terminated_at: status === "terminated" ? new Date() : null,
      ...(opts.limitKrw === undefined ? {} : { micro_payment_limit_krw: opts.limitKrw }),
    })
    .returning<{ subscription_id: string }[]>("subscription_id");
  return line?.subscription_id as string;
}
