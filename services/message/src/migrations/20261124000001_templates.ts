import type { Knex } from "knex";

// Templates are versioned: an edit inserts a new template_versions row, never updates the text
// of an existing one. At most one version of a template is active (partial unique index).
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    create table message.templates (
      template_id uuid primary key default gen_random_uuid(),
      name text not null check (name ~ '^[a-z0-9][a-z0-9-]{1,63}$'),
      channel text not null check (channel in ('sms', 'email', 'push')),
      locale text not null,
      created_at timestamptz not null default now(),
      unique (name, channel, locale)
    );
    create table message.template_versions (
      template_id uuid not null references message.templates (template_id),
      version integer not null check (version >= 1),
      subject text not null default '',
      body text not null,
      variables jsonb not null default '[]',
      status text not null check (status in ('draft', 'active', 'archived')),
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      primary key (template_id, version)
    );
    create unique index template_versions_one_active on message.template_versions (template_id) where status = 'active';
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw("drop table message.template_versions; drop table message.templates;");
}
