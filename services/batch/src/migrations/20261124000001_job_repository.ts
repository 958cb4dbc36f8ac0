import type { Knex } from "knex";

// The job repository, after Spring Batch's: instances (name + identifying parameters, unique),
// executions, step executions per partition with their counts, and a per-step execution context
// that the billing step updates in the same transaction as each chunk's invoices.
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    create table billing.job_instance (
      job_instance_id bigserial primary key,
      job_name text not null,
      -- identifying parameters, canonical JSON (sorted keys), e.g. {"month":"2026-10"}
      job_key text not null,
      parameters jsonb not null,
      created_at timestamptz not null default now(),
      unique (job_name, job_key)
    );
    create table billing.job_execution (
      job_execution_id bigserial primary key,
      job_instance_id bigint not null references billing.job_instance (job_instance_id),
      status text not null check (status in ('STARTING','STARTED','STOPPING','STOPPED','COMPLETED','FAILED','ABANDONED')),
      created_at timestamptz not null default now(),
      started_at timestamptz,
      ended_at timestamptz,
      exit_code text not null default 'UNKNOWN',
      exit_message text not null default '',
      last_updated timestamptz not null default now()
    );
    -- One running execution per job instance, enforced by the database: a second start is refused.
    create unique index job_execution_one_running on billing.job_execution (job_instance_id)
      where status in ('STARTING', 'STARTED', 'STOPPING');
    create index job_execution_by_instance on billing.job_execution (job_instance_id, job_execution_id desc);
    create table billing.step_execution (
      step_execution_id bigserial primary key,
      job_execution_id bigint not null references billing.job_execution (job_execution_id),
      step_name text not null,
      status text not null check (status in ('STARTING','STARTED','STOPPING','STOPPED','COMPLETED','FAILED','ABANDONED')),
      read_count bigint not null default 0,
      write_count bigint not null default 0,
      skip_count bigint not null default 0,
      commit_count bigint not null default 0,
      rollback_count bigint not null default 0,
      started_at timestamptz,
      ended_at timestamptz,
      exit_code text not null default 'UNKNOWN',
      exit_message text not null default '',
      last_updated timestamptz not null default now(),
      unique (job_execution_id, step_name)
    );
    create table billing.step_execution_context (
      step_execution_id bigint primary key references billing.step_execution (step_execution_id),
      context jsonb not null default '{}',
      updated_at timestamptz not null default now()
    );
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    drop table billing.step_execution_context; drop table billing.step_execution;
    drop table billing.job_execution; drop table billing.job_instance;`);
}
