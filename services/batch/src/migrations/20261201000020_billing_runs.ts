import type { Knex } from "knex";

// What the monthly billing job needs beyond the job repository and the invoice tables:
// - who runs an execution and when it last said so (a killed process is found by its silence, and
//   its execution is failed before a restart takes the instance over), the heartbeat in a table of
//   its own;
// - the usage snapshot a job bills from (read once from the usage unit, then billed in chunks);
// - the months that are closed;
// - invoice numbers given by position rather than a counter: a partition owns a block of numbers
//   fixed when the job was partitioned, so a restarted or reordered run numbers every line as an
//   uninterrupted one would, and the block sizes add up to the lines billed (no gaps, checked
//   when the month closes).
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    alter table billing.job_execution add column owner text not null default '';
    -- Heartbeats in a row of their own: a chunk's transaction holds a share lock on its
    -- execution's row (the fence) for as long as it runs, which must not hold up a heartbeat.
    create table billing.job_heartbeat (
      job_execution_id bigint primary key references billing.job_execution (job_execution_id),
      owner text not null,
      beat_at timestamptz not null
    );

    create table billing.usage_snapshot (
      month text not null check (month ~ '^\\d{4}-(0[1-9]|1[0-2])$'),
      subscription_id text not null,
      used_bytes bigint not null check (used_bytes >= 0),
      primary key (month, subscription_id)
    );

    -- Late usage: bytes of a closed month counted after its close (cumulative, as the usage unit
    -- reports them when a later month's job takes its snapshot), and how much of it each invoice
    -- billed: an invoice bills what the earlier ones did not.
    create table billing.late_snapshot (
      month text not null check (month ~ '^\\d{4}-(0[1-9]|1[0-2])$'),
      subscription_id text not null,
      origin_month text not null check (origin_month ~ '^\\d{4}-(0[1-9]|1[0-2])$' and origin_month < month),
      late_bytes bigint not null check (late_bytes >= 0),
      primary key (month, subscription_id, origin_month)
    );
    create table billing.late_billed (
      subscription_id text not null,
      origin_month text not null,
      billed_month text not null check (billed_month > origin_month),
      -- Late bytes of origin_month billed up to and including billed_month's invoice.
      through_bytes bigint not null check (through_bytes >= 0),
      primary key (subscription_id, origin_month, billed_month)
    );

    create table billing.months (
      month text primary key check (month ~ '^\\d{4}-(0[1-9]|1[0-2])$'),
      closed_at timestamptz not null,
      job_execution_id bigint not null references billing.job_execution (job_execution_id),
      invoices bigint not null,
      total_krw bigint not null
    );

    alter table billing.invoices
      add column used_bytes bigint not null default 0 check (used_bytes >= 0),
      add constraint invoices_number_format check (invoice_number ~ '^\\d{4}-\\d{2}-\\d{7}$');
    create index invoices_month_number on billing.invoices (month, invoice_number);
    drop table billing.invoice_number_counters;
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    create table billing.invoice_number_counters (
      month text primary key check (month ~ '^\\d{4}-(0[1-9]|1[0-2])$'),
      last_number bigint not null default 0 check (last_number >= 0)
    );
    drop index billing.invoices_month_number;
    alter table billing.invoices drop constraint invoices_number_format, drop column used_bytes;
    drop table billing.months; drop table billing.usage_snapshot;
    drop table billing.late_billed; drop table billing.late_snapshot;
    drop table billing.job_heartbeat;
    alter table billing.job_execution drop column owner;`);
}
