import { create, type DescMessage, type Message, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { Knex } from "knex";
import {
  type ActivateLineRequest,
  ActivateLineResponseSchema,
  type CancelVasRequest,
  CancelVasResponseSchema,
  type ChangePlanRequest,
  ChangePlanResponseSchema,
  type GetLineContactRequest,
  GetLineContactResponseSchema,
  type GetLineHistoryRequest,
  GetLineHistoryResponseSchema,
  type GetLineRequest,
  GetLineResponseSchema,
  type GrantDiscountRequest,
  GrantDiscountResponseSchema,
  type Line,
  LineSchema,
  LineStatus,
  type ListLineQuotasRequest,
  ListLineQuotasResponseSchema,
  type ListLinesRequest,
  ListLinesResponseSchema,
  NumberSource,
  PlanChangeTiming,
  type ResumeLineRequest,
  ResumeLineResponseSchema,
  type SubscribeVasRequest,
  SubscribeVasResponseSchema,
  type SubscriptionService,
  type SuspendLineRequest,
  SuspendLineResponseSchema,
  type TerminateLineRequest,
  TerminateLineResponseSchema,
  type WithdrawDiscountRequest,
  WithdrawDiscountResponseSchema,
} from "../../../../gen/telco/domain/v1/subscription_pb.js";
import { assertLineAccess, mayReveal, principalOf } from "../../../kit/src/auth.js";
import { decodePageToken, encodePageToken, ID_RE, notFound, pageSize, Violations } from "../../../kit/src/errors.js";
import { TRACE_HEADERS } from "../../../kit/src/kafka.js";
import { once, requestFingerprint } from "../idempotency.js";
import type { PiiCipher } from "../pii/cipher.js";
import { mapPii } from "../pii/data-loss.js";
import { formatPhone, maskPhone } from "../pii/normalise.js";
import type { CustomerStore } from "../store/customer-store.js";
import type { Headers, LineRow, LineStatusName, LineStore, PeriodRow } from "../store/line-store.js";
import { NUMBER_CONTEXT } from "../store/number-pool.js";

const SUBSCRIPTION_ID_RE = /^L\d{10}$/;
const CATALOGUE_ID_RE = /^[A-Z0-9][A-Z0-9-]{1,31}$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const STATUS_TO_PROTO: Record<LineStatusName, LineStatus> = {
  active: LineStatus.ACTIVE,
  suspended: LineStatus.SUSPENDED,
  terminated: LineStatus.TERMINATED,
};
const STATUS_FROM_PROTO: Partial<Record<LineStatus, LineStatusName>> = {
  [LineStatus.ACTIVE]: "active",
  [LineStatus.SUSPENDED]: "suspended",
  [LineStatus.TERMINATED]: "terminated",
};

export interface SubscriptionSettings {
  /** Days a terminated line's number stays held for its customer. */
  numberRetentionDays: number;
  /** The carrier's time zone: "next month" starts at 00:00 on its first day there. */
  timeZone: string;
}

const ts = (d: Date | null) => (d ? timestampFromDate(d) : undefined);
const period = (p: PeriodRow) => ({ validFrom: timestampFromDate(p.valid_from), validTo: ts(p.valid_to) });

function checkRequestId(v: Violations, requestId: string): void {
  v.check(ID_RE.test(requestId), "request_id", "required: 1-64 letters, digits, '.', '_', ':' or '-'");
}
function checkLine(v: Violations, subscriptionId: string): void {
  v.check(SUBSCRIPTION_ID_RE.test(subscriptionId), "subscription_id", "required: 'L' and 10 digits");
}
function checkCatalogueId(v: Violations, field: string, id: string): void {
  v.check(CATALOGUE_ID_RE.test(id), field, "required: 2-32 capital letters, digits or '-'");
}

/** Six or more digits in a row, also when split by spaces, dots or dashes (a phone number, a birth date). */
const DIGIT_RUN_RE = /\d(?:[\s.-]?\d){5,}/;

/**
 * A suspend reason is free text that goes to Kafka (LineSuspended.reason) and the status
 * history, so it must not carry personal data: no numbers that could be one, no e-mail address.
 */
export function checkSuspendReason(v: Violations, reason: string): void {
  v.check(reason.length <= 200, "reason", "at most 200 characters");
  v.check(!DIGIT_RUN_RE.test(reason), "reason", "must not contain 6 or more digits in a row (no personal data)");
  v.check(!reason.includes("@"), "reason", "must not contain '@' (no e-mail addresses)");
}

/** PostgreSQL's exclusion_violation: two overlapping history periods of one line. */
const PG_EXCLUSION_VIOLATION = "23P01";

/** A race the exclusion constraints caught (overlapping history periods): the caller may retry. */
function mapConflict(e: unknown): never {
  if ((e as { code?: unknown } | null)?.code === PG_EXCLUSION_VIOLATION) {
    throw new ConnectError(
      "the line's history changed concurrently (overlapping periods refused); retry the request",
      Code.Aborted,
    );
  }
  throw e;
}

/** The W3C trace context of the request, carried into the outbox records it causes. */
function traceHeaders(ctx: HandlerContext): Headers {
  const h: Headers = {};
  for (const name of TRACE_HEADERS) {
    const value = ctx.requestHeader.get(name);
    if (value) h[name] = value;
  }
  return h;
}

export class SubscriptionServiceImpl implements ServiceImpl<typeof SubscriptionService> {
  constructor(
    private readonly store: LineStore,
    private readonly pii: PiiCipher,
    private readonly settings: SubscriptionSettings,
    /** The customers of the lines, opened for GetLineContact. */
    private readonly customers: CustomerStore,
  ) {}

  /** The line's number in clear, as digits. */
  private digitsOf(r: LineRow): string {
    return mapPii(() => this.pii.open(r.number_sealed, NUMBER_CONTEXT));
  }

  private toLine(r: LineRow, reveal = false): Line {
    const digits = this.digitsOf(r);
    return create(LineSchema, {
      subscriptionId: r.subscription_id,
      customerId: r.customer_id,
      phoneNumber: reveal ? formatPhone(digits) : maskPhone(digits),
      status: STATUS_TO_PROTO[r.status],
      planId: r.plan_id ?? "",
      quotaBytes: BigInt(r.quota_bytes ?? 0),
      activatedAt: timestampFromDate(r.activated_at),
      terminatedAt: ts(r.terminated_at),
    });
  }

  /** A mutation in one transaction, answered once per request id (see idempotency.ts). */
  private mutate<Desc extends DescMessage>(
    method: string,
    req: Message & { requestId: string },
    ctx: HandlerContext,
    schema: Desc,
    run: (trx: Knex.Transaction) => Promise<MessageShape<Desc>>,
  ): Promise<MessageShape<Desc>> {
    const caller = principalOf(ctx);
    const fingerprint = requestFingerprint(ctx.method.input, req, caller.subject);
    const staff = caller.role !== "subscriber";
    return this.store
      .transaction((trx) => once(trx, method, req.requestId, fingerprint, schema, () => run(trx), staff))
      .catch(mapConflict);
  }

  private async lineIn(trx: Knex.Transaction, id: string): Promise<Line> {
    const row = await this.store.getLine(id, trx);
    if (!row) throw notFound(`line ${id}`);
    return this.toLine(row);
  }

  async activateLine(req: ActivateLineRequest, ctx: HandlerContext) {
    const v = new Violations();
    checkRequestId(v, req.requestId);
    v.check(UUID_RE.test(req.customerId), "customer_id", "required: a customer id (UUID)");
    checkCatalogueId(v, "plan_id", req.planId);
    v.throwIfAny();
    const headers = traceHeaders(ctx);
    return this.mutate("ActivateLine", req, ctx, ActivateLineResponseSchema, async (trx) => {
      const { subscriptionId, source } = await this.store.activate(
        trx,
        req.customerId.toLowerCase(),
        req.planId,
        headers,
      );
      return create(ActivateLineResponseSchema, {
        line: await this.lineIn(trx, subscriptionId),
        numberSource: source === "returned" ? NumberSource.RETURNED : NumberSource.ALLOCATED,
      });
    });
  }

  async getLine(req: GetLineRequest, ctx: HandlerContext) {
    const v = new Violations();
    checkLine(v, req.subscriptionId);
    if (req.reveal) v.check(req.revealReason.trim().length > 0, "reveal_reason", "required when reveal is set");
    v.check(req.revealReason.length <= 200, "reveal_reason", "at most 200 characters");
    v.throwIfAny();
    const p = principalOf(ctx);
    assertLineAccess(p, req.subscriptionId);
    if (req.reveal && !mayReveal(p))
      throw new ConnectError(`role ${p.role} may not see numbers in clear`, Code.PermissionDenied);
    if (!req.reveal) {
      const row = await this.store.getLine(req.subscriptionId);
      if (!row) throw notFound(`line ${req.subscriptionId}`);
      return create(GetLineResponseSchema, { line: this.toLine(row) });
    }
    return this.store.transaction(async (trx) => {
      const row = await this.store.getLine(req.subscriptionId, trx);
      if (!row) throw notFound(`line ${req.subscriptionId}`);
      await this.store.auditReveal(trx, p, req.subscriptionId, req.revealReason.trim());
      return create(GetLineResponseSchema, { line: this.toLine(row, true) });
    });
  }

  /**
   * The line's number and its customer's e-mail and name in clear, for the message unit's sends
   * (the policy admits service tokens only). Not audited per call: the message unit records the
   * request each send answered. A terminated line answers too, with its status: the caller decides.
   */
  async getLineContact(req: GetLineContactRequest) {
    const v = new Violations();
    checkLine(v, req.subscriptionId);
    v.throwIfAny();
    const row = await this.store.getLine(req.subscriptionId);
    if (!row) throw notFound(`line ${req.subscriptionId}`);
    const customer = await this.customers.get(row.customer_id);
    // subscriptions.customer_id references customers: a line without its customer is a broken database.
    if (!customer) throw new ConnectError(`the customer of line ${req.subscriptionId} is missing`, Code.Internal);
    const contact = mapPii(() => this.customers.openContact(customer));
    return create(GetLineContactResponseSchema, {
      subscriptionId: row.subscription_id,
      status: STATUS_TO_PROTO[row.status],
      phoneNumber: formatPhone(this.digitsOf(row)),
      email: contact.email ?? "",
      name: contact.name,
    });
  }

  async listLines(req: ListLinesRequest) {
    const v = new Violations();
    const limit = pageSize(req.pageSize, 100, 500, v);
    const after = decodePageToken(req.pageToken, v);
    const status = STATUS_FROM_PROTO[req.status];
    v.check(req.status === LineStatus.UNSPECIFIED || status !== undefined, "status", "unknown line status");
    v.throwIfAny();
    const rows = await this.store.listLines({
      after: after === undefined ? undefined : String(after),
      limit: limit + 1,
      status,
    });
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return create(ListLinesResponseSchema, {
      lines: page.map((r) => this.toLine(r)),
      nextPageToken: rows.length > limit && last ? encodePageToken(last.subscription_id) : "",
    });
  }

  async changePlan(req: ChangePlanRequest, ctx: HandlerContext) {
    const v = new Violations();
    checkRequestId(v, req.requestId);
    checkLine(v, req.subscriptionId);
    checkCatalogueId(v, "new_plan_id", req.newPlanId);
    v.check(
      req.timing === PlanChangeTiming.NOW || req.timing === PlanChangeTiming.NEXT_MONTH,
      "timing",
      "required: NOW or NEXT_MONTH",
    );
    v.throwIfAny();
    // Subscribers change their own line's plan, from next month; a change in the middle of the
    // month (prorated) is customer care's (operators).
    const p = principalOf(ctx);
    assertLineAccess(p, req.subscriptionId);
    if (p.role === "subscriber" && req.timing !== PlanChangeTiming.NEXT_MONTH) {
      throw new ConnectError(
        "subscribers change their plan from next month (timing NEXT_MONTH); a change now goes through customer care",
        Code.PermissionDenied,
      );
    }
    const headers = traceHeaders(ctx);
    return this.mutate("ChangePlan", req, ctx, ChangePlanResponseSchema, async (trx) => {
      const p = await this.store.changePlan(
        trx,
        req.subscriptionId,
        req.newPlanId,
        req.timing === PlanChangeTiming.NOW ? "now" : "next_month",
        this.settings.timeZone,
        headers,
      );
      return create(ChangePlanResponseSchema, {
        line: await this.lineIn(trx, req.subscriptionId),
        period: { planId: p.item_id, ...period(p) },
      });
    });
  }

  async suspendLine(req: SuspendLineRequest, ctx: HandlerContext) {
    const v = new Violations();
    checkRequestId(v, req.requestId);
    checkLine(v, req.subscriptionId);
    checkSuspendReason(v, req.reason.trim());
    v.throwIfAny();
    const headers = traceHeaders(ctx);
    return this.mutate("SuspendLine", req, ctx, SuspendLineResponseSchema, async (trx) => {
      await this.store.suspend(trx, req.subscriptionId, req.reason.trim(), headers);
      return create(SuspendLineResponseSchema, { line: await this.lineIn(trx, req.subscriptionId) });
    });
  }

  async resumeLine(req: ResumeLineRequest, ctx: HandlerContext) {
    const v = new Violations();
    checkRequestId(v, req.requestId);
    checkLine(v, req.subscriptionId);
    v.throwIfAny();
    const headers = traceHeaders(ctx);
    return this.mutate("ResumeLine", req, ctx, ResumeLineResponseSchema, async (trx) => {
      await this.store.resume(trx, req.subscriptionId, headers);
      return create(ResumeLineResponseSchema, { line: await this.lineIn(trx, req.subscriptionId) });
    });
  }

  async terminateLine(req: TerminateLineRequest, ctx: HandlerContext) {
    const v = new Violations();
    checkRequestId(v, req.requestId);
    checkLine(v, req.subscriptionId);
    v.throwIfAny();
    const headers = traceHeaders(ctx);
    return this.mutate("TerminateLine", req, ctx, TerminateLineResponseSchema, async (trx) => {
      await this.store.terminate(trx, req.subscriptionId, this.settings.numberRetentionDays, headers);
      return create(TerminateLineResponseSchema, { line: await this.lineIn(trx, req.subscriptionId) });
    });
  }

  subscribeVas(req: SubscribeVasRequest, ctx: HandlerContext) {
    return this.addon("SubscribeVas", req, ctx, "vas", req.vasId, "start", SubscribeVasResponseSchema, (p) => ({
      period: { vasId: p.item_id, ...period(p) },
    }));
  }

  cancelVas(req: CancelVasRequest, ctx: HandlerContext) {
    return this.addon("CancelVas", req, ctx, "vas", req.vasId, "end", CancelVasResponseSchema, (p) => ({
      period: { vasId: p.item_id, ...period(p) },
    }));
  }

  grantDiscount(req: GrantDiscountRequest, ctx: HandlerContext) {
    return this.addon(
      "GrantDiscount",
      req,
      ctx,
      "discount",
      req.discountId,
      "start",
      GrantDiscountResponseSchema,
      (p) => ({
        period: { discountId: p.item_id, ...period(p) },
      }),
    );
  }

  withdrawDiscount(req: WithdrawDiscountRequest, ctx: HandlerContext) {
    return this.addon(
      "WithdrawDiscount",
      req,
      ctx,
      "discount",
      req.discountId,
      "end",
      WithdrawDiscountResponseSchema,
      (p) => ({
        period: { discountId: p.item_id, ...period(p) },
      }),
    );
  }

  /** VAS and discounts: validate, then open or close a history period once per request id. */
  private async addon<Desc extends DescMessage, Req extends Message & { requestId: string; subscriptionId: string }>(
    method: string,
    req: Req,
    ctx: HandlerContext,
    kind: "vas" | "discount",
    itemId: string,
    action: "start" | "end",
    schema: Desc,
    answer: (p: AddonPeriodOf<LineStore>) => MessageInitShape<Desc>,
  ) {
    const v = new Violations();
    checkRequestId(v, req.requestId);
    checkLine(v, req.subscriptionId);
    checkCatalogueId(v, kind === "vas" ? "vas_id" : "discount_id", itemId);
    v.throwIfAny();
    const headers = traceHeaders(ctx);
    return this.mutate(method, req, ctx, schema, async (trx) => {
      const p =
        action === "start"
          ? await this.store.addonStart(trx, kind, req.subscriptionId, itemId, headers)
          : await this.store.addonEnd(trx, kind, req.subscriptionId, itemId, headers);
      return create(schema, answer(p));
    });
  }

  async getLineHistory(req: GetLineHistoryRequest, ctx: HandlerContext) {
    const v = new Violations();
    checkLine(v, req.subscriptionId);
    v.throwIfAny();
    assertLineAccess(principalOf(ctx), req.subscriptionId);
    if (!(await this.store.exists(req.subscriptionId))) throw notFound(`line ${req.subscriptionId}`);
    const h = await this.store.history(req.subscriptionId);
    return create(GetLineHistoryResponseSchema, {
      plans: h.plans.map((p) => ({ planId: p.item_id, ...period(p) })),
      vas: h.vas.map((p) => ({ vasId: p.item_id, ...period(p) })),
      discounts: h.discounts.map((p) => ({ discountId: p.item_id, ...period(p) })),
      statusChanges: h.statuses.map((s) => ({
        status: STATUS_TO_PROTO[s.status],
        at: timestampFromDate(s.at),
        reason: s.reason,
      })),
    });
  }

  async *listLineQuotas(req: ListLineQuotasRequest, ctx: HandlerContext) {
    const v = new Violations();
    const limit = pageSize(req.pageSize, 5_000, 10_000, v);
    v.throwIfAny();
    let after: string | undefined;
    for (;;) {
      if (ctx.signal.aborted) return;
      const rows = await this.store.quotaPage(after, limit);
      if (rows.length === 0) return;
      yield create(ListLineQuotasResponseSchema, {
        quotas: rows.map((r) => ({
          subscriptionId: r.subscription_id,
          planId: r.plan_id,
          quotaBytes: BigInt(r.quota_bytes),
          lineSequence: BigInt(r.line_sequence),
          next:
            r.next_from === null
              ? undefined
              : { quotaBytes: BigInt(r.next_quota_bytes ?? 0), effectiveFrom: timestampFromDate(r.next_from) },
        })),
      });
      if (rows.length < limit) return;
      after = rows.at(-1)?.subscription_id;
    }
  }
}

type AddonPeriodOf<S extends { addonStart: (...a: never[]) => Promise<unknown> }> = Awaited<
  ReturnType<S["addonStart"]>
>;
