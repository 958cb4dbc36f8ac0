import * as path from "node:path";
import knexFactory, { type Knex } from "knex";

export type { Knex } from "knex";

export interface PostgresSettings {
  url: string;
  /** The unit's own schema; its migrations table lives there too. */
  schema: string;
  poolMax?: number;
  applicationName?: string;
}

/** A knex pool on the unit's schema; timestamps come back as Date, bigint as string (no precision loss). */
export function createKnex({ url, schema, poolMax = 10, applicationName }: PostgresSettings): Knex {
  return knexFactory({
    client: "pg",
    connection: { connectionString: url, application_name: applicationName ?? schema },
    searchPath: [schema, "public"],
    pool: { min: 0, max: poolMax, idleTimeoutMillis: 30_000 },
    acquireConnectionTimeout: 10_000,
  });
}

/**
 * Applies the unit's knex migrations (services/<unit>/src/migrations), creating its schema first.
 * Each unit keeps its own migrations table inside its own schema, so units migrate independently.
 */
export async function migrate(knex: Knex, schema: string, directory: string): Promise<string[]> {
  await knex.raw("create schema if not exists ??", [schema]);
  const [, applied] = (await knex.migrate.latest({
    directory: path.resolve(directory),
    schemaName: schema,
    tableName: "knex_migrations",
    loadExtensions: [".ts", ".js"],
  })) as [number, string[]];
  return applied;
}
