import type { Knex } from "knex";

// The plan catalogue. Money is whole won (KRW has no minor unit) in bigint; quota 0 = unlimited.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.withSchema("domain").createTable("plans", (t) => {
    t.text("plan_id").primary();
    t.text("name").notNullable();
    t.bigInteger("monthly_fee_krw").notNullable();
    t.bigInteger("quota_bytes").notNullable();
    t.bigInteger("overage_unit_bytes").notNullable().defaultTo(0);
    t.bigInteger("overage_unit_price_krw").notNullable().defaultTo(0);
    t.bigInteger("overage_cap_krw").notNullable().defaultTo(0);
    t.boolean("active").notNullable().defaultTo(true);
    t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw(`
    alter table domain.plans
      add constraint plans_fee_nonneg check (monthly_fee_krw >= 0),
      add constraint plans_quota_nonneg check (quota_bytes >= 0),
      add constraint plans_overage_nonneg check (overage_unit_bytes >= 0 and overage_unit_price_krw >= 0 and overage_cap_krw >= 0),
      add constraint plans_id_format check (plan_id ~ '^[A-Z0-9][A-Z0-9-]{1,31}$')`);

  const GiB = 1024n ** 3n;
  const MiB = 1024n ** 2n;
  // The starting catalogue: reference data, so it ships with the schema.
  await knex("domain.plans").insert([
    { plan_id: "5G-SLIM-8G", name: "5G 슬림 8GB", monthly_fee_krw: 55_000, quota_bytes: String(8n * GiB) },
    { plan_id: "5G-BASIC-24G", name: "5G 베이직 24GB", monthly_fee_krw: 59_000, quota_bytes: String(24n * GiB) },
    { plan_id: "5G-STD-110G", name: "5G 스탠다드 110GB", monthly_fee_krw: 69_000, quota_bytes: String(110n * GiB) },
    { plan_id: "5G-PREMIUM-UNL", name: "5G 프리미엄 무제한", monthly_fee_krw: 89_000, quota_bytes: "0" },
    {
      plan_id: "LTE-DATA-2G",
      name: "LTE 데이터 2GB",
      monthly_fee_krw: 33_000,
      quota_bytes: String(2n * GiB),
      overage_unit_bytes: String(MiB),
      overage_unit_price_krw: 23,
      overage_cap_krw: 33_000,
    },
    {
      plan_id: "LTE-SENIOR-1G",
      name: "LTE 시니어 1GB",
      monthly_fee_krw: 22_000,
      quota_bytes: String(GiB),
      active: false,
    },
  ]);
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.withSchema("domain").dropTable("plans");
}
