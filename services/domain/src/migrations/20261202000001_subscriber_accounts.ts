import type { Knex } from "knex";

/**
 * Subscribers' own sign-in to the portal's self-service: an account per customer, with a user
 * name chosen for it (never the phone number or e-mail: those are personal data and stay sealed)
 * and a scrypt password hash. Their tokens carry the customer's lines that are not terminated.
 * A user name is unique across operators and subscribers (Login looks both up by it).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    create table domain.subscriber_accounts (
      account_id uuid primary key default gen_random_uuid(),
      username text not null unique check (username ~ '^[a-z][a-z0-9._-]{2,31}$'),
      customer_id uuid not null references domain.customers (customer_id),
      password_hash text not null,
      active boolean not null default true,
      created_at timestamptz not null default now()
    );
    create index subscriber_accounts_customer on domain.subscriber_accounts (customer_id);`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw("drop table domain.subscriber_accounts");
}
