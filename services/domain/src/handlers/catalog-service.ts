import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type CatalogService,
  DiscountKind,
  DiscountTarget,
  type GetPlanRequest,
  GetPlanResponseSchema,
  type ListDiscountsRequest,
  ListDiscountsResponseSchema,
  type ListPlansRequest,
  ListPlansResponseSchema,
  type ListVasRequest,
  ListVasResponseSchema,
  type Plan,
  PlanSchema,
} from "../../../../gen/telco/domain/v1/catalog_pb.js";
import { decodePageToken, encodePageToken, notFound, pageSize, Violations } from "../../../kit/src/errors.js";
import type { CatalogStore, ExtrasStore, PlanRow } from "../store/catalog-store.js";

const PLAN_ID_RE = /^[A-Z0-9][A-Z0-9-]{1,31}$/;
const krw = (amount: string) => ({ currencyCode: "KRW", amountMinor: BigInt(amount) });

export function toPlan(r: PlanRow): Plan {
  return create(PlanSchema, {
    planId: r.plan_id,
    name: r.name,
    monthlyFee: krw(r.monthly_fee_krw),
    quotaBytes: BigInt(r.quota_bytes),
    overage: {
      unitBytes: BigInt(r.overage_unit_bytes),
      unitPrice: krw(r.overage_unit_price_krw),
      monthlyCap: krw(r.overage_cap_krw),
    },
    active: r.active,
  });
}

export class CatalogServiceImpl implements ServiceImpl<typeof CatalogService> {
  constructor(
    private readonly store: CatalogStore,
    private readonly extras: ExtrasStore,
  ) {}

  async listVas(req: ListVasRequest) {
    const rows = await this.extras.listVas(req.includeInactive);
    return create(ListVasResponseSchema, {
      vas: rows.map((r) => ({ vasId: r.vas_id, name: r.name, monthlyFee: krw(r.monthly_fee_krw), active: r.active })),
    });
  }

  async listDiscounts(req: ListDiscountsRequest) {
    const rows = await this.extras.listDiscounts(req.includeInactive);
    return create(ListDiscountsResponseSchema, {
      discounts: rows.map((r) => ({
        discountId: r.discount_id,
        name: r.name,
        kind: r.kind === "percent" ? DiscountKind.PERCENT : DiscountKind.FIXED,
        percentBp: r.percent_bp,
        amount: krw(r.amount_krw),
        target: r.target === "plan_fee" ? DiscountTarget.PLAN_FEE : DiscountTarget.ALL_FEES,
        applyOrder: r.apply_order,
        active: r.active,
      })),
    });
  }

  async listPlans(req: ListPlansRequest) {
    const v = new Violations();
    const limit = pageSize(req.pageSize, 100, 500, v);
    const after = decodePageToken(req.pageToken, v);
    v.throwIfAny();
    const rows = await this.store.listPlans({
      after: after === undefined ? undefined : String(after),
      limit: limit + 1,
      includeInactive: req.includeInactive,
    });
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return create(ListPlansResponseSchema, {
      plans: page.map(toPlan),
      nextPageToken: rows.length > limit && last ? encodePageToken(last.plan_id) : "",
    });
  }

  async getPlan(req: GetPlanRequest) {
    const v = new Violations();
    v.check(PLAN_ID_RE.test(req.planId), "plan_id", "required: 2-32 capital letters, digits or '-', e.g. 5G-STD-110G");
    v.throwIfAny();
    const row = await this.store.getPlan(req.planId);
    if (!row) throw notFound(`plan ${req.planId}`);
    return create(GetPlanResponseSchema, { plan: toPlan(row) });
  }
}
