/**
 * Applies every unit's knex migrations to DATABASE_URL (default: the local `telco` database).
 * Each unit owns one schema and keeps its migration history there.
 *   npm run migrate            # all units
 *   npm run migrate -- domain  # one unit
 * The same code runs in each unit's image as its init container (services/kit/src/migrate-unit.ts).
 */
import { type MigratedUnit, migrateAll, UNIT_SCHEMAS } from "../services/kit/src/migrate-unit.js";

export { migrateAll, UNIT_SCHEMAS };

if (import.meta.url === `file://${process.argv[1]}`) {
  const url = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/telco";
  const args = process.argv.slice(2);
  const bad = args.filter((a) => !(a in UNIT_SCHEMAS));
  if (bad.length) {
    console.error(`migrate: unknown unit ${bad.join(", ")}; expected one of ${Object.keys(UNIT_SCHEMAS).join(", ")}`);
    process.exit(2);
  }
  migrateAll(url, args.length ? (args as MigratedUnit[]) : undefined).catch((e) => {
    console.error(`migrate failed: ${(e as Error).message}`);
    process.exit(1);
  });
}
