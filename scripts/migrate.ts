/**
 * Applies every unit's knex migrations to DATABASE_URL (default: the local `telco` database).
 * Each unit owns one schema and keeps its migration history there.
 *   npm run migrate            # all units
 *   npm run migrate -- domain  # one unit
 */
import { fileURLToPath } from "node:url";
import { createKnex, migrate } from "../services/kit/src/postgres.js";

export const UNIT_SCHEMAS = { domain: "domain", message: "message", batch: "billing" } as const;
type Unit = keyof typeof UNIT_SCHEMAS;

export async function migrateAll(url: string, units: Unit[] = Object.keys(UNIT_SCHEMAS) as Unit[], log = console.log) {
  for (const unit of units) {
    const schema = UNIT_SCHEMAS[unit];
    const knex = createKnex({ url, schema, poolMax: 2 });
    try {
      const dir = fileURLToPath(new URL(`../services/${unit}/src/migrations`, import.meta.url));
      const applied = await migrate(knex, schema, dir);
      log(`[migrate] ${unit} (schema ${schema}): ${applied.length ? `applied ${applied.join(", ")}` : "up to date"}`);
    } finally {
      await knex.destroy();
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const url = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/telco";
  const args = process.argv.slice(2);
  const bad = args.filter((a) => !(a in UNIT_SCHEMAS));
  if (bad.length) {
    console.error(`migrate: unknown unit ${bad.join(", ")}; expected one of ${Object.keys(UNIT_SCHEMAS).join(", ")}`);
    process.exit(2);
  }
  migrateAll(url, args.length ? (args as Unit[]) : undefined).catch((e) => {
    console.error(`migrate failed: ${(e as Error).message}`);
    process.exit(1);
  });
}
