import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  type ListPaymentsRequest,
  ListPaymentsResponseSchema,
  type MicroPayment,
  MicroPaymentSchema,
  type MicroPaymentService,
  type RecordPaymentRequest,
  RecordPaymentResponseSchema,
} from "../../../../gen/telco/domain/v1/micropayment_pb.js";
import { assertLineAccess, principalOf } from "../../../kit/src/auth.js";
import { MONTH_RE, notFound, Violations } from "../../../kit/src/errors.js";
import { monthIn, type PaymentRow, type PaymentStore } from "../store/payment-store.js";

/** Gateways choose their keys; a UUID or an order number fits. */
const IDEMPOTENCY_KEY_RE = /^[\x21-\x7e]{1,128}$/;
/** A line id, as the subscription service writes it. */
const SUBSCRIPTION_ID_RE = /^L\d{10}$/;
/** A payment dated this far ahead of the server clock is a caller's mistake, not clock skew. */
const MAX_FUTURE_MS = 5 * 60_000;

const krw = (amount: bigint | string) => ({ currencyCode: "KRW", amountMinor: BigInt(amount) });

function toPayment(r: PaymentRow): MicroPayment {
  return create(MicroPaymentSchema, {
    paymentId: r.payment_id,
    subscriptionId: r.subscription_id,
    merchant: r.merchant,
    amount: krw(r.amount_krw),
    occurredAt: timestampFromDate(r.occurred_at),
    idempotencyKey: r.idempotency_key,
  });
}

export class MicroPaymentServiceImpl implements ServiceImpl<typeof MicroPaymentService> {
  constructor(private readonly store: PaymentStore) {}

  async recordPayment(req: RecordPaymentRequest, ctx: HandlerContext) {
    const v = new Violations();
    v.check(
      IDEMPOTENCY_KEY_RE.test(req.idempotencyKey),
      "idempotency_key",
      "required: 1-128 printable ASCII characters",
    );
    v.check(SUBSCRIPTION_ID_RE.test(req.subscriptionId), "subscription_id", "required: 'L' and 10 digits");
    const merchant = req.merchant.trim();
    v.check(merchant.length >= 1 && merchant.length <= 100, "merchant", "required: 1-100 characters");
    const amount = req.amount;
    if (v.check(amount !== undefined, "amount", "required: a positive amount in KRW") && amount) {
      v.check(amount.currencyCode === "KRW", "amount.currency_code", 'must be "KRW"');
      v.check(amount.amountMinor > 0n, "amount.amount_minor", "must be positive (whole won)");
    }
    const now = Date.now();
    const occurredAt = req.occurredAt ? timestampDate(req.occurredAt) : new Date(now);
    // Not before the start of the current month either: checked by the store, after a retry of an
    // earlier payment has had its answer (see PaymentStore.record).
    v.check(
      !Number.isNaN(occurredAt.getTime()) && occurredAt.getTime() <= now + MAX_FUTURE_MS,
      "occurred_at",
      "must not lie more than 5 minutes in the future",
    );
    v.throwIfAny();
    assertLineAccess(principalOf(ctx), req.subscriptionId);

    const r = await this.store.record({
      idempotencyKey: req.idempotencyKey,
      subscriptionId: req.subscriptionId,
      merchant,
      amountKrw: (amount as { amountMinor: bigint }).amountMinor,
      occurredAt,
      occurredAtSet: req.occurredAt !== undefined,
    });
    return create(RecordPaymentResponseSchema, {
      payment: toPayment(r.payment),
      monthTotal: krw(r.totalKrw),
      monthLimit: krw(r.limitKrw),
    });
  }

  async listPayments(req: ListPaymentsRequest, ctx: HandlerContext) {
    const v = new Violations();
    v.check(SUBSCRIPTION_ID_RE.test(req.subscriptionId), "subscription_id", "required: 'L' and 10 digits");
    v.check(req.month === "" || MONTH_RE.test(req.month), "month", 'must be "YYYY-MM" (empty = this month)');
    v.throwIfAny();
    assertLineAccess(principalOf(ctx), req.subscriptionId);
    const month = req.month || monthIn(this.store.timeZone, new Date());
    const r = await this.store.list(req.subscriptionId, month);
    if (!r) throw notFound(`line ${req.subscriptionId}`);
    return create(ListPaymentsResponseSchema, {
      payments: r.payments.map(toPayment),
      monthTotal: krw(r.totalKrw),
      monthLimit: krw(r.limitKrw),
    });
  }
}
