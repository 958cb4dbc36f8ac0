import type { Knex } from "knex";

/**
 * The relay takes a row only when no earlier unpublished row of the same key is left out of its
 * batch (events/outbox-relay.ts). That check looks rows up by key among the unpublished ones;
 * without this index it scans every unpublished row once per row of the batch.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(
    "create index if not exists outbox_unpublished_key on domain.outbox (key, outbox_id) where published_at is null",
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw("drop index if exists domain.outbox_unpublished_key");
}
