/**
 * Operator accounts of the domain unit (staff who sign in to the portal and the APIs):
 *   npm run operator -- add --username kim.cs --role operator   # password read from stdin, or generated and printed once
 *   npm run operator -- disable --username kim.cs
 * DATABASE_URL as for the units (default: the local telco database).
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { OperatorStore } from "../services/domain/src/store/operator-store.js";
import { createKnex } from "../services/kit/src/postgres.js";

const USAGE = "usage: npm run operator -- add --username NAME --role admin|operator|viewer | disable --username NAME";

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
  typeof parseArgs<{ options: { username: { type: "string" }; role: { type: "string" } }; allowPositionals: true }>
>;
try {
  parsed = parseArgs({ options: { username: { type: "string" }, role: { type: "string" } }, allowPositionals: true });
} catch (e) {
  fail((e as Error).message);
}
const [command] = parsed.positionals;
const { username, role } = parsed.values;
if (command !== "add" && command !== "disable") fail("say add or disable");
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
  } else {
    const n = await knex("operators").where({ username }).update({ active: false });
    if (n === 0) fail(`no operator ${username}`);
    process.stdout.write(`operator ${username} disabled\n`);
  }
} finally {
  await knex.destroy();
}
