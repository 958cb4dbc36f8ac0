/**
 * Schema migrations started together (replicas whose init containers run at once) wait for each
 * other on PostgreSQL's advisory lock: every run succeeds and each migration is applied once.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, it } from "node:test";
import pg from "pg";
import { migrateAll, UNIT_SCHEMAS } from "../services/kit/src/migrate-unit.js";
import { ROOT } from "./support/processes.js";

const db = "telco_test_migrate";
const admin = () => new pg.Client({ connectionString: "postgres://postgres@127.0.0.1:5432/postgres" });

before(async () => {
  const c = admin();
  await c.connect();
  await c.query(`drop database if exists ${db} with (force)`);
  await c.query(`create database ${db}`);
  await c.end();
});
after(async () => {
  const c = admin();
  await c.connect();
  await c.query(`drop database if exists ${db} with (force)`);
  await c.end();
});

it("four migrations of an empty database at once all succeed, and apply each migration once", async () => {
  const url = `postgres://postgres@127.0.0.1:5432/${db}`;
  const logs: string[] = [];
  await Promise.all(Array.from({ length: 4 }, () => migrateAll(url, undefined, (l) => logs.push(l))));
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    for (const [unit, schema] of Object.entries(UNIT_SCHEMAS)) {
      const files = readdirSync(join(ROOT, "services", unit, "src/migrations")).filter((f) => /\.(ts|js)$/.test(f));
      const r = await c.query(`select name from ${schema}.knex_migrations`);
      assert.equal(r.rowCount, files.length, `${schema}: each migration once`);
      assert.equal(new Set(r.rows.map((x) => x.name)).size, files.length);
    }
  } finally {
    await c.end();
  }
  // One run applied them; the others, after waiting, found the schema up to date.
  for (const unit of Object.keys(UNIT_SCHEMAS)) {
    const lines = logs.filter((l) => l.startsWith(`[migrate] ${unit} `));
    assert.equal(lines.length, 4);
    assert.equal(lines.filter((l) => l.includes("applied")).length, 1, lines.join("\n"));
  }
});
