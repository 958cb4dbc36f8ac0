/**
 * Operator accounts of the domain unit (staff who sign in to the portal and the APIs):
 *   npm run operator -- add --username kim.cs --role operator   # password read from stdin, or generated and printed once
 *   npm run operator -- disable --username kim.cs
 *   npm run operator -- subscriber --username hong.gd --customer <customer id>   # a subscriber's self-service account
 * DATABASE_URL as for the units (default: the local telco database).
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { OperatorStore } from "../services/domain/src/store/operator-store.js";
import { createKnex } from "../services/kit/src/postgres.js";

const USAGE =
  "usage: npm run operator -- add --username NAME --role admin|operator|viewer | disable --username NAME | subscriber --username NAME --customer ID";

function fail(message: string): never {
  process.stderr.write(`operator: ${message}\n${USAGE}\n`);
  process.exit(2);
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return "";
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8").trim();
}

let parsed: ReturnType<
  typeof parseArgs<{
    options: { username: { type: "string" }; role: { type: "string" }; customer: { type: "string" } };
    allowPositionals: true;
  }>
>;
try {
  parsed = parseArgs({
    options: { username: { type: "string" }, role: { type: "string" }, customer: { type: "string" } },
    allowPositionals: true,
  });
} catch (e) {
  fail((e as Error).message);
}
const [command] = parsed.positionals;
const { username, role, customer } = parsed.values;
if (command !== "add" && command !== "disable" && command !== "subscriber") fail("say add, disable or subscriber");
if (!username || !/^[a-z][a-z0-9._-]{2,31}$/.test(username))
  fail("--username: 3-32 lower-case letters, digits, '.', '_' or '-'");

const knex = createKnex({
  url: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/telco",
  schema: "domain",
  poolMax: 1,
});
try {
  if (command === "add") {
    if (role !== "admin" && role !== "operator" && role !== "viewer") fail("--role must be admin, operator or viewer");
    const given = await readStdin();
    if (given && given.length < 12) fail("a password needs at least 12 characters");
    const password = given || randomBytes(12).toString("base64url");
    await new OperatorStore(knex).create(username, password, role);
    process.stdout.write(
      given
        ? `operator ${username} (${role}) saved\n`
        : `operator ${username} (${role}) saved; password: ${password}\n`,
    );
  } else if (command === "subscriber") {
    if (!customer || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(customer))
      fail("--customer: the customer's id (a UUID, as the portal and CreateCustomer show it)");
    if (!(await knex("customers").where({ customer_id: customer }).first("customer_id")))
      fail(`no customer ${customer}`);
    const given = await readStdin();
    if (given && given.length < 12) fail("a password needs at least 12 characters");
    const password = given || randomBytes(12).toString("base64url");
    await new OperatorStore(knex).accounts().createSubscriber(username, password, customer);
    process.stdout.write(
      given ? `subscriber ${username} saved\n` : `subscriber ${username} saved; password: ${password}\n`,
    );
  } else {
    // Operators and subscribers share one name space: disable whichever has the name.
    const n = await knex("operators").where({ username }).update({ active: false });
    if (n > 0) process.stdout.write(`operator ${username} disabled\n`);
    else if (await new OperatorStore(knex).accounts().disableSubscriber(username))
      process.stdout.write(`subscriber ${username} disabled\n`);
    else fail(`no operator or subscriber ${username}`);
  }
} finally {
  await knex.destroy();
}
