import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type CatalogService,
  type GetPlanRequest,
  GetPlanResponseSchema,
  type ListPlansRequest,
  ListPlansResponseSchema,
  type Plan,
  PlanSchema,
} from "../../../../gen/telco/domain/v1/catalog_pb.js";
import { decodePageToken, encodePageToken, notFound, pageSize, Violations } from "../../../kit/src/errors.js";
import type { CatalogStore, PlanRow } from "../store/catalog-store.js";

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
  constructor(private readonly store: CatalogStore) {}

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
