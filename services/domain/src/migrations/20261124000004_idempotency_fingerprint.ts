import type { Knex } from "knex";

/**
 * A request id names one request: each kept answer also keeps the SHA-256 fingerprint of the
 * request that earned it (its body without the id, and the caller), so the same id sent with a
 * different body is refused instead of answered with another request's answer. Rows kept before
 * this migration have no fingerprint (null) and are replayed as before.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    alter table domain.idempotency_keys
      add column fingerprint bytea check (fingerprint is null or octet_length(fingerprint) = 32);`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw("alter table domain.idempotency_keys drop column fingerprint");
}
