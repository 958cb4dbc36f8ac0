import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  type GetLineUsageRequest,
  GetLineUsageResponseSchema,
  type SetLineQuotaRequest,
  SetLineQuotaResponseSchema,
  type UsageService,
} from "../../../../gen/telco/usage/v1/usage_pb.js";
import { assertLineAccess, principalOf } from "../../../kit/src/auth.js";
import { ID_RE, MONTH_RE, notFound, Violations } from "../../../kit/src/errors.js";
import type { LineUsageStore } from "../store/line-usage-store.js";

/** Largest quota accepted: 1 PiB. Anything above is a unit mistake (bits, or KB as bytes). */
const MAX_QUOTA = 1n << 50n;

export class UsageServiceImpl implements ServiceImpl<typeof UsageService> {
  constructor(private readonly store: LineUsageStore) {}

  async getLineUsage(req: GetLineUsageRequest, ctx: HandlerContext) {
    const v = new Violations();
    v.check(ID_RE.test(req.subscriptionId), "subscription_id", "required: 1-64 letters, digits, '.', '_', ':' or '-'");
    v.check(MONTH_RE.test(req.month), "month", 'required: "YYYY-MM", e.g. "2026-11"');
    v.throwIfAny();
    assertLineAccess(principalOf(ctx), req.subscriptionId);
    const u = await this.store.get(req.subscriptionId, req.month);
    if (u.unknown) throw notFound(`line ${req.subscriptionId}`);
    const quota = u.quotaBytes ?? 0n;
    return create(GetLineUsageResponseSchema, {
      subscriptionId: req.subscriptionId,
      month: req.month,
      usedBytes: u.usedBytes,
      quotaBytes: quota,
      alertedLevels: u.alertedLevels,
      percent: quota > 0n ? Number((u.usedBytes * 10_000n) / quota) / 100 : 0,
      quotaKnown: u.quotaBytes !== undefined,
    });
  }

  async setLineQuota(req: SetLineQuotaRequest) {
    const v = new Violations();
    v.check(ID_RE.test(req.subscriptionId), "subscription_id", "required: 1-64 letters, digits, '.', '_', ':' or '-'");
    v.check(req.quotaBytes <= MAX_QUOTA, "quota_bytes", `must be at most ${MAX_QUOTA} (1 PiB); 0 means unlimited`);
    v.throwIfAny();
    await this.store.setQuota(req.subscriptionId, req.quotaBytes);
    return create(SetLineQuotaResponseSchema, { subscriptionId: req.subscriptionId, quotaBytes: req.quotaBytes });
  }
}
