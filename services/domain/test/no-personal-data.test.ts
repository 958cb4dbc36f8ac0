/**
 * DESIGN.md invariant 6, checked from the outside: after customers with distinctive personal
 * values go through the API (create, update, search, reveal, refused requests, a line activated,
 * changed and suspended), no column of any table of schema `domain` (bytea compared on bytes)
 * and no line the servers logged holds one of those values, or the line's number, in clear.
 */

import assert from "node:assert/strict";
import { randomInt, randomUUID } from "node:crypto";
import { Writable } from "node:stream";
import { after, before, it } from "node:test";
import { ConnectError } from "@connectrpc/connect";
import { CustomerService } from "../../../gen/telco/domain/v1/customer_pb.js";
import { PlanChangeTiming, SubscriptionService } from "../../../gen/telco/domain/v1/subscription_pb.js";
import { tokenFor } from "../../../test/support/auth.js";
import { grpcClient } from "../../../test/support/clients.js";
import { personal } from "../../../test/support/personal.js";
import { type RunningUnits, startUnits } from "../../../test/support/units.js";
import { ownPool } from "./pool-fixture.js";

const logs: string[] = [];
const capture = new Writable({
  write(chunk, _enc, done) {
    logs.push(chunk.toString("utf8"));
    done();
  },
});
let units: RunningUnits;

before(async () => {
  units = await startUnits({ logs: capture });
  // Numbers of earlier runs are sealed with other test keys: give this run numbers it can open.
  await ownPool(units.knex.domain, 5);
});
after(async () => {
  await units?.stop();
});

const tag = randomUUID().slice(0, 8);
const phone = `010${randomInt(10_000_000, 99_999_999)}`;
const phone2 = `010${randomInt(10_000_000, 99_999_999)}`;
const dashed = (d: string) => `${d.slice(0, 3)}-${d.slice(3, 7)}-${d.slice(7)}`;
/** Every form a value could leak in: as typed, normalised, formatted. */
const PERSONAL = [
  `탐지용${tag}`,
  `탐지변경${tag}`,
  phone,
  dashed(phone),
  phone2,
  dashed(phone2),
  `leak.${tag}@nopd-${tag}.kr`,
  `second.${tag}@nopd-${tag}.kr`,
  "1931-07-23",
  "1932-11-05",
].map((v) => personal(v));
personal(`Leak.${tag}@NOPD-${tag}.kr`);

it("stores and logs no personal value in clear", async () => {
  const operator = grpcClient(CustomerService, units.at.domain.url, await tokenFor("operator"));
  const created = await operator.createCustomer({
    requestId: randomUUID(),
    name: `탐지용${tag}`,
    phoneNumber: dashed(phone),
    email: `Leak.${tag}@NOPD-${tag}.kr`,
    birthDate: "1931-07-23",
  });
  const id = created.customer?.customerId as string;
  await operator.updateCustomer({
    requestId: randomUUID(),
    customerId: id,
    name: `탐지변경${tag}`,
    phoneNumber: phone2,
    email: `second.${tag}@nopd-${tag}.kr`,
    birthDate: "1932-11-05",
  });
  await operator.searchCustomers({ query: { case: "phoneNumber", value: phone2 } });
  await operator.searchCustomers({ query: { case: "email", value: `second.${tag}@nopd-${tag}.kr` } });
  const clear = await operator.getCustomer({ customerId: id, reveal: true, revealReason: "scan test" });
  assert.equal(clear.customer?.phoneNumber, dashed(phone2), "the reveal did answer in clear");
  // Refused requests carry personal values too; neither their errors nor the logs repeat them.
  const refused = await operator
    .createCustomer({ requestId: "", name: `탐지용${tag}`, phoneNumber: phone, email: "x", birthDate: "1931-07-23" })
    .catch((e: unknown) => ConnectError.from(e));
  assert.ok(refused instanceof ConnectError);
  for (const v of PERSONAL) assert.ok(!refused.message.includes(v), "error message without personal values");

  // A line of that customer: its number goes through activation, events (outbox payloads are
  // bytea) and a reveal, and must be stored only sealed.
  const lines = grpcClient(SubscriptionService, units.at.domain.url, await tokenFor("operator"));
  const activated = await lines.activateLine({ requestId: randomUUID(), customerId: id, planId: "5G-SLIM-8G" });
  const sid = activated.line?.subscriptionId as string;
  assert.match(sid, /^L\d{10}$/);
  await lines.changePlan({
    requestId: randomUUID(),
    subscriptionId: sid,
    newPlanId: "5G-STD-110G",
    timing: PlanChangeTiming.NOW,
  });
  await lines.suspendLine({ requestId: randomUUID(), subscriptionId: sid, reason: "scan test" });
  const revealed = await lines.getLine({ subscriptionId: sid, reveal: true, revealReason: "scan test" });
  const formatted = revealed.line?.phoneNumber ?? "";
  assert.match(formatted, /^010-\d{4}-\d{4}$/, "the reveal did answer the number in clear");
  const number = formatted.replaceAll("-", "");
  /** The line's number in every form it could leak in: digits, dashed, spaced, international. */
  const numberForms = [
    number,
    formatted,
    `${number.slice(0, 3)} ${number.slice(3, 7)} ${number.slice(7)}`,
    `+82${number.slice(1)}`,
    `82${number.slice(1)}`,
  ];
  const personal = [...PERSONAL, ...numberForms];

  // Every column of every table of schema domain: text forms, and the raw bytes of bytea columns.
  const knex = units.knex.domain;
  const columns = (
    await knex.raw(
      `select table_name, column_name, data_type from information_schema.columns
       where table_schema = 'domain' and table_name in
         (select table_name from information_schema.tables where table_schema = 'domain' and table_type = 'BASE TABLE')
       order by table_name, ordinal_position`,
    )
  ).rows as { table_name: string; column_name: string; data_type: string }[];
  assert.ok(columns.some((c) => c.table_name === "customers"));
  const hits: string[] = [];
  for (const c of columns) {
    const col = knex.raw("??", [c.column_name]).toString();
    const conditions = personal.map((v) =>
      c.data_type === "bytea"
        ? knex.raw(`position(convert_to(?, 'UTF8') in ${col}) > 0`, [v]).toString()
        : knex.raw(`strpos(lower(${col}::text), lower(?)) > 0`, [v]).toString(),
    );
    const found = await knex.raw(`select count(*)::int as n from ?? where ${conditions.join(" or ")}`, [
      `domain.${c.table_name}`,
    ]);
    if (found.rows[0].n > 0) hits.push(`${c.table_name}.${c.column_name}`);
  }
  assert.deepEqual(hits, [], "columns holding a personal value in clear");

  await units.stop();
  const logged = logs.join("");
  assert.ok(logs.length > 0, "the servers' logs were captured");
  for (const v of personal) assert.ok(!logged.toLowerCase().includes(v.toLowerCase()), "a personal value was logged");
});
