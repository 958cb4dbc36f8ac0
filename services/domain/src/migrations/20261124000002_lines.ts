import type { Knex } from "knex";

/**
 * The domain model: customers (personal data sealed, see src/pii/cipher.ts), the number pool,
 * lines, and their plan / VAS / discount history as validity ranges. The database itself refuses
 * two overlapping history rows of one line (exclusion constraints), whatever code inserts them.
 * The outbox carries every change other units care about, written in the same transaction.
 */
export async function up(knex: Knex): Promise<void> {
  // btree_gist lets one exclusion constraint combine equality on the line with range overlap.
  await knex.raw("create extension if not exists btree_gist");
  await knex.raw(`
    create table domain.vas (
      vas_id text primary key check (vas_id ~ '^[A-Z0-9][A-Z0-9-]{1,31}$'),
      name text not null,
      monthly_fee_krw bigint not null check (monthly_fee_krw >= 0),
      active boolean not null default true,
      created_at timestamptz not null default now()
    );
    create table domain.discounts (
      discount_id text primary key check (discount_id ~ '^[A-Z0-9][A-Z0-9-]{1,31}$'),
      name text not null,
      kind text not null check (kind in ('percent', 'fixed')),
      percent_bp integer not null default 0 check (percent_bp between 0 and 10000),
      amount_krw bigint not null default 0 check (amount_krw >= 0),
      target text not null check (target in ('plan_fee', 'all_fees')),
      apply_order integer not null,
      active boolean not null default true,
      created_at timestamptz not null default now(),
      check ((kind = 'percent' and percent_bp > 0 and amount_krw = 0) or (kind = 'fixed' and amount_krw > 0 and percent_bp = 0))
    );

    create table domain.customers (
      customer_id uuid primary key default gen_random_uuid(),
      name_sealed bytea not null,
      -- The masked name ("홍*동") is what name-prefix search and lists show; never the full name.
      name_masked text not null,
      phone_sealed bytea not null,
      phone_index bytea not null,
      email_sealed bytea,
      email_index bytea,
      birth_date_sealed bytea not null,
      -- The key every sealed value of this row is sealed with; re-encryption moves rows by it.
      key_id text not null,
      create_request_id text unique,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create index customers_phone_index on domain.customers (phone_index);
    create index customers_email_index on domain.customers (email_index);
    create index customers_name_masked on domain.customers (name_masked text_pattern_ops);
    create index customers_key_id on domain.customers (key_id);

    -- The carrier's number inventory. A number is free, assigned to a live line, or held for the
    -- customer whose line was terminated, until the retention window ends.
    create table domain.numbers (
      number_id bigserial primary key,
      number_sealed bytea not null,
      number_index bytea not null unique,
      status text not null check (status in ('free', 'assigned', 'held')),
      held_for uuid references domain.customers (customer_id),
      held_until timestamptz,
      key_id text not null,
      check ((status = 'held') = (held_for is not null and held_until is not null))
    );
    create index numbers_free on domain.numbers (number_id) where status = 'free';
    create index numbers_held on domain.numbers (held_for, held_until) where status = 'held';
    create index numbers_key_id on domain.numbers (key_id);

    create sequence domain.subscription_seq;
    create table domain.subscriptions (
      subscription_id text primary key
        default 'L' || lpad(nextval('domain.subscription_seq')::text, 10, '0'),
      customer_id uuid not null references domain.customers (customer_id),
      number_id bigint not null references domain.numbers (number_id),
      status text not null check (status in ('active', 'suspended', 'terminated')),
      activated_at timestamptz not null,
      terminated_at timestamptz,
      micro_payment_limit_krw bigint not null default 300000 check (micro_payment_limit_krw >= 0),
      -- Increases with every domain event of the line (DomainEvent.line_sequence).
      line_sequence bigint not null default 0,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      check ((status = 'terminated') = (terminated_at is not null))
    );
    -- A number serves at most one line that is not terminated.
    create unique index subscriptions_live_number on domain.subscriptions (number_id) where status <> 'terminated';
    create index subscriptions_customer on domain.subscriptions (customer_id);

    create table domain.subscription_status_history (
      id bigserial primary key,
      subscription_id text not null references domain.subscriptions (subscription_id),
      status text not null check (status in ('active', 'suspended', 'terminated')),
      at timestamptz not null,
      reason text not null default ''
    );
    create index subscription_status_history_line on domain.subscription_status_history (subscription_id, at);

    create table domain.subscription_plan (
      id bigserial primary key,
      subscription_id text not null references domain.subscriptions (subscription_id),
      plan_id text not null references domain.plans (plan_id),
      valid tstzrange not null check (not isempty(valid) and lower_inc(valid) and not upper_inc(valid)),
      exclude using gist (subscription_id with =, valid with &&)
    );
    create table domain.subscription_vas (
      id bigserial primary key,
      subscription_id text not null references domain.subscriptions (subscription_id),
      vas_id text not null references domain.vas (vas_id),
      valid tstzrange not null check (not isempty(valid) and lower_inc(valid) and not upper_inc(valid)),
      exclude using gist (subscription_id with =, vas_id with =, valid with &&)
    );
    create table domain.subscription_discount (
      id bigserial primary key,
      subscription_id text not null references domain.subscriptions (subscription_id),
      discount_id text not null references domain.discounts (discount_id),
      valid tstzrange not null check (not isempty(valid) and lower_inc(valid) and not upper_inc(valid)),
      exclude using gist (subscription_id with =, discount_id with =, valid with &&)
    );

    create table domain.micro_payments (
      payment_id uuid primary key default gen_random_uuid(),
      subscription_id text not null references domain.subscriptions (subscription_id),
      merchant text not null,
      amount_krw bigint not null check (amount_krw > 0),
      occurred_at timestamptz not null,
      -- "YYYY-MM" of occurred_at in the carrier's time zone.
      month text not null check (month ~ '^\\d{4}-(0[1-9]|1[0-2])$'),
      idempotency_key text not null unique,
      created_at timestamptz not null default now()
    );
    create index micro_payments_line_month on domain.micro_payments (subscription_id, month);

    -- Mutating RPCs are idempotent on their request id: the first answer is kept and replayed.
    create table domain.idempotency_keys (
      method text not null,
      request_id text not null,
      response bytea not null,
      created_at timestamptz not null default now(),
      primary key (method, request_id)
    );

    create table domain.outbox (
      outbox_id bigserial primary key,
      -- Deterministic: the same change always has the same id (DomainEvent.event_id).
      event_id text not null unique,
      topic text not null,
      key text not null,
      payload bytea not null,
      headers jsonb not null default '{}',
      created_at timestamptz not null default now(),
      published_at timestamptz
    );
    create index outbox_unpublished on domain.outbox (outbox_id) where published_at is null;

    create table domain.audit_log (
      audit_id bigserial primary key,
      at timestamptz not null default now(),
      -- Who: the token's subject and role; never a personal value.
      actor text not null,
      role text not null,
      action text not null,
      target_type text not null,
      target_id text not null,
      reason text not null default '',
      request_id text not null default ''
    );
    create index audit_log_target on domain.audit_log (target_type, target_id, at);

    create table domain.operators (
      operator_id uuid primary key default gen_random_uuid(),
      username text not null unique check (username ~ '^[a-z][a-z0-9._-]{2,31}$'),
      -- scrypt: "scrypt$N$r$p$salt(base64)$hash(base64)"
      password_hash text not null,
      role text not null check (role in ('admin', 'operator', 'viewer')),
      active boolean not null default true,
      created_at timestamptz not null default now()
    );
  `);

  await knex("domain.vas").insert([
    { vas_id: "RINGBACK", name: "컬러링", monthly_fee_krw: 990 },
    { vas_id: "ROAMING-PASS", name: "로밍 데이터 패스", monthly_fee_krw: 11_000 },
    { vas_id: "CLOUD-50G", name: "클라우드 50GB", monthly_fee_krw: 2_200 },
    { vas_id: "SPAM-BLOCK", name: "스팸 차단", monthly_fee_krw: 0 },
  ]);
  await knex("domain.discounts").insert([
    {
      discount_id: "CONTRACT-25",
      name: "선택약정 25%",
      kind: "percent",
      percent_bp: 2_500,
      target: "plan_fee",
      apply_order: 10,
    },
    {
      discount_id: "FAMILY-5500",
      name: "가족결합 5,500원",
      kind: "fixed",
      amount_krw: 5_500,
      target: "all_fees",
      apply_order: 20,
    },
    {
      discount_id: "WELFARE-11000",
      name: "복지 할인 11,000원",
      kind: "fixed",
      amount_krw: 11_000,
      target: "all_fees",
      apply_order: 30,
    },
  ]);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    drop table domain.operators, domain.audit_log, domain.outbox, domain.idempotency_keys,
      domain.micro_payments, domain.subscription_discount, domain.subscription_vas,
      domain.subscription_plan, domain.subscription_status_history, domain.subscriptions,
      domain.numbers, domain.customers, domain.discounts, domain.vas;
    drop sequence domain.subscription_seq;`);
}
