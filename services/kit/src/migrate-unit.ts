/**
 * Applies units' knex migrations to DATABASE_URL. Each unit owns one schema and keeps its
 * migration history there. In a cluster every unit's image runs it for its own unit as an init
 * container before the unit starts (deploy/k8s/base/<unit>/deployment.yaml); concurrent runs are
 * safe (knex takes a lock in the schema's migrations table).
 *   node --import tsx services/kit/src/migrate-unit.ts domain
 */
import { fileURLToPath } from "node:url";
import { redactUrl } from "./config.js";
import { createKnex, migrate } from "./postgres.js";

export const UNIT_SCHEMAS = { domain: "domain", message: "message", batch: "billing" } as const;
export type MigratedUnit = keyof typeof UNIT_SCHEMAS;

export async function migrateAll(
  url: string,
  units: MigratedUnit[] = Object.keys(UNIT_SCHEMAS) as MigratedUnit[],
  log: (line: string) => void = console.log,
): Promise<void> {
  for (const unit of units) {
    const schema = UNIT_SCHEMAS[unit];
    // One connection holds the migration lock, the others run the migrations.
    const knex = createKnex({ url, schema, poolMax: 3 });
    try {
      const dir = fileURLToPath(new URL(`../../${unit}/src/migrations`, import.meta.url));
      const applied = await migrate(knex, schema, dir);
      log(`[migrate] ${unit} (schema ${schema}): ${applied.length ? `applied ${applied.join(", ")}` : "up to date"}`);
    } finally {
      await knex.destroy();
    }
  }
}

/** `migrate [unit...]` from the command line: exit 2 on an unknown unit, 1 when a migration fails. */
export function migrateCli(
  args: string[],
  url = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/telco",
) {
  const bad = args.filter((a) => !(a in UNIT_SCHEMAS));
  if (bad.length) {
    console.error(`migrate: unknown unit ${bad.join(", ")}; expected one of ${Object.keys(UNIT_SCHEMAS).join(", ")}`);
    process.exit(2);
  }
  migrateAll(url, args.length ? (args as MigratedUnit[]) : undefined).catch((e) => {
    console.error(`migrate failed at ${redactUrl(url)}: ${(e as Error).message}`);
    process.exit(1);
  });
}

if (import.meta.url === `file://${process.argv[1]}`) migrateCli(process.argv.slice(2));
