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
  // Processes migrating the same schema at once (replicas starting together, each with its init
  // container) wait for each other on a session advisory lock, which PostgreSQL releases if the
  // holder dies; knex's own lock table would make the others fail instead, and stay locked
  // after a crash.
  const conn = await knex.client.acquireConnection();
  try {
    await knex.raw("select pg_advisory_lock(hashtext(?))", [`telco-migrate:${schema}`]).connection(conn);
    try {
      await knex.raw("create schema if not exists ??", [schema]);
      const [, applied] = (await knex.migrate.latest({
        directory: path.resolve(directory),
        schemaName: schema,
        tableName: "knex_migrations",
        loadExtensions: [".ts", ".js"],
      })) as [number, string[]];
      return applied;
    } finally {
      await knex.raw("select pg_advisory_unlock(hashtext(?))", [`telco-migrate:${schema}`]).connection(conn);
    }
  } finally {
    await knex.client.releaseConnection(conn);
  }
}
