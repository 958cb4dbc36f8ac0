/**
 * Applies every unit's knex migrations to DATABASE_URL (default: the local `telco` database).
 * Each unit owns one schema and keeps its migration history there.
 *   npm run migrate            # all units
 *   npm run migrate -- domain  # one unit
 * The same code runs in each unit's image as its init container (services/kit/src/migrate-unit.ts).
 */
import { migrateAll, migrateCli, UNIT_SCHEMAS } from "../services/kit/src/migrate-unit.js";

export { migrateAll, UNIT_SCHEMAS };

if (import.meta.url === `file://${process.argv[1]}`) migrateCli(process.argv.slice(2));
