import type { Knex } from "knex";

export interface PlanRow {
  plan_id: string;
  name: string;
  monthly_fee_krw: string;
  quota_bytes: string;
  overage_unit_bytes: string;
  overage_unit_price_krw: string;
  overage_cap_krw: string;
  active: boolean;
}

const COLUMNS = [
  "plan_id",
  "name",
  "monthly_fee_krw",
  "quota_bytes",
  "overage_unit_bytes",
  "overage_unit_price_krw",
  "overage_cap_krw",
  "active",
] as const;

export class CatalogStore {
  constructor(private readonly knex: Knex) {}

  /** Keyset paging by plan_id: stable under inserts, no OFFSET. */
  async listPlans(opts: { after?: string; limit: number; includeInactive: boolean }): Promise<PlanRow[]> {
    const q = this.knex<PlanRow>("plans")
      .select([...COLUMNS])
      .orderBy("plan_id")
      .limit(opts.limit);
    if (opts.after !== undefined) q.where("plan_id", ">", opts.after);
    if (!opts.includeInactive) q.where("active", true);
    return q;
  }

  async getPlan(planId: string): Promise<PlanRow | undefined> {
    return this.knex<PlanRow>("plans")
      .select([...COLUMNS])
      .where("plan_id", planId)
      .first();
  }
}

export interface VasRow {
  vas_id: string;
  name: string;
  monthly_fee_krw: string;
  active: boolean;
}

export interface DiscountRow {
  discount_id: string;
  name: string;
  kind: "percent" | "fixed";
  percent_bp: number;
  amount_krw: string;
  target: "plan_fee" | "all_fees";
  apply_order: number;
  active: boolean;
}

export class ExtrasStore {
  constructor(private readonly knex: Knex) {}

  async listVas(includeInactive: boolean): Promise<VasRow[]> {
    const q = this.knex<VasRow>("vas").select("vas_id", "name", "monthly_fee_krw", "active").orderBy("vas_id");
    if (!includeInactive) q.where("active", true);
    return q;
  }

  async listDiscounts(includeInactive: boolean): Promise<DiscountRow[]> {
    const q = this.knex<DiscountRow>("discounts")
      .select("discount_id", "name", "kind", "percent_bp", "amount_krw", "target", "apply_order", "active")
      .orderBy(["apply_order", "discount_id"]);
    if (!includeInactive) q.where("active", true);
    return q;
  }
}
