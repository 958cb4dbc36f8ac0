import type { Knex } from "knex";

/**
 * Messages, one row per request and channel: the request id is the idempotency key, enforced by
 * the unique (request_id, channel). Every status a message goes through is a row of
 * message_status_history; each status change also writes its DeliveryResult to the outbox in the
 * same transaction (relayed to message.results). Recipient addresses are never stored: they are
 * read from the domain unit when the message is sent.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    create table message.messages (
      message_id uuid primary key default gen_random_uuid(),
      request_id text not null,
      channel text not null check (channel in ('sms', 'email', 'push')),
      subscription_id text not null,
      kind text not null check (kind in ('usage_threshold', 'welcome', 'invoice_issued', 'direct')),
      template_id uuid not null,
      template_version integer not null,
      -- Variables given with the request (never the recipient's personal data).
      variables jsonb not null default '{}',
      urgent boolean not null default false,
      -- queued / deferred: waiting to be due; sending: claimed by a dispatcher (submitting_at set
      -- once it is written to the provider); then sent, delivered, failed or cancelled.
      status text not null check (status in ('queued', 'deferred', 'sending', 'sent', 'delivered', 'failed', 'cancelled')),
      send_at timestamptz not null,
      attempts integer not null default 0,
      claimed_until timestamptz,
      -- Which claim holds the message: a dispatcher whose claim ran out can no longer send it.
      claim_token uuid,
      submitting_at timestamptz,
      provider text not null default '',
      reason text not null default '',
      segments integer not null default 0,
      -- The notification request as it was read (Protobuf), dead-lettered with it when it fails.
      request bytea,
      source_topic text,
      source_partition integer,
      source_offset bigint,
      traceparent text,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      unique (request_id, channel),
      foreign key (template_id, template_version) references message.template_versions (template_id, version)
    );
    create index messages_due on message.messages (send_at) where status in ('queued', 'deferred');
    create index messages_claimed on message.messages (claimed_until) where status = 'sending';
    create index messages_line on message.messages (subscription_id, created_at desc, message_id desc);

    create table message.message_status_history (
      id bigserial primary key,
      message_id uuid not null references message.messages (message_id),
      status text not null,
      at timestamptz not null,
      reason text not null default ''
    );
    create index message_status_history_message on message.message_status_history (message_id, id);

    -- SMS parts as the SMSC numbered them, and the delivery receipts it sent for them. A receipt
    -- may arrive before its submit is recorded; a message is delivered once every part is.
    create table message.sms_parts (
      smsc_message_id text primary key,
      message_id uuid not null references message.messages (message_id),
      part integer not null
    );
    create index sms_parts_message on message.sms_parts (message_id);
    create table message.sms_receipts (
      smsc_message_id text primary key,
      stat text not null,
      received_at timestamptz not null default now()
    );

    create table message.outbox (
      outbox_id bigserial primary key,
      event_id text not null unique,
      topic text not null,
      key text not null,
      payload bytea not null,
      headers jsonb not null default '{}',
      created_at timestamptz not null default now(),
      published_at timestamptz
    );
    create index outbox_unpublished on message.outbox (outbox_id) where published_at is null;
    create index outbox_unpublished_key on message.outbox (key, outbox_id) where published_at is null;
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`drop table message.outbox, message.sms_receipts, message.sms_parts,
    message.message_status_history, message.messages`);
}
