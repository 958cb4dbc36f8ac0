import type { Knex } from "knex";

// Invoices, written by the billing job and read by the domain unit's InvoiceService (DESIGN's billing
// flow: batch writes the shared PostgreSQL, the domain API reads). Lines are referred to by id only:
// they live in the domain schema, which migrates on its own, so there is no foreign key across.
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    create table billing.invoices (
      invoice_id uuid primary key default gen_random_uuid(),
      -- "YYYY-MM-NNNNNNN": a per-month sequence without gaps (billing.invoice_number_counters).
      invoice_number text not null unique,
      subscription_id text not null,
      month text not null check (month ~ '^\\d{4}-(0[1-9]|1[0-2])$'),
      subtotal_krw bigint not null,
      vat_krw bigint not null check (vat_krw >= 0),
      total_krw bigint not null,
      issued_at timestamptz not null,
      due_date date not null,
      -- The run that wrote it (a restart is a new execution of the same job instance).
      job_execution_id bigint not null references billing.job_execution (job_execution_id),
      check (total_krw = subtotal_krw + vat_krw),
      check (left(invoice_number, 7) = month),
      -- One invoice per line per month, whatever runs twice (the backstop of a restarted job).
      unique (subscription_id, month)
    );
    create table billing.invoice_lines (
      invoice_id uuid not null references billing.invoices (invoice_id) on delete cascade,
      line_no integer not null check (line_no >= 1),
      kind text not null check (kind in
        ('plan_fee', 'vas_fee', 'discount', 'micro_payment', 'data_overage', 'adjustment', 'vat')),
      description text not null,
      -- Negative for discounts and credits.
      amount_krw bigint not null,
      -- The catalogue item (plan, VAS or discount id) or payment it refers to; '' if none.
      ref_id text not null default '',
      primary key (invoice_id, line_no)
    );
    -- Taken with "update ... set last_number = last_number + n returning" inside the chunk's
    -- transaction: a rolled-back chunk gives its numbers back, so the sequence has no gaps.
    create table billing.invoice_number_counters (
      month text primary key check (month ~ '^\\d{4}-(0[1-9]|1[0-2])$'),
      last_number bigint not null default 0 check (last_number >= 0)
    );
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw("drop table billing.invoice_lines, billing.invoices, billing.invoice_number_counters");
}
