import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "knex";
import { invalidArgument } from "../../../kit/src/errors.js";

export interface PaymentRow {
  payment_id: string;
  subscription_id: string;
  merchant: string;
  amount_krw: string;
  occurred_at: Date;
  month: string;
  idempotency_key: string;
}

export interface NewPayment {
  idempotencyKey: string;
  subscriptionId: string;
  merchant: string;
  amountKrw: bigint;
  occurredAt: Date;
  /** Whether the caller gave occurred_at (unset means "now", which a retry cannot repeat). */
  occurredAtSet: boolean;
}

export interface MonthTotals {
  totalKrw: bigint;
  limitKrw: bigint;
}

const COLUMNS = [
  "payment_id",
  "subscription_id",
  "merchant",
  "amount_krw",
  "occurred_at",
  "month",
  "idempotency_key",
] as const;

/** "YYYY-MM" of an instant in the carrier's time zone. */
export function monthIn(timeZone: string, at: Date): string {
  // en-CA formats as YYYY-MM-DD.
  return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit" }).format(at).slice(0, 7);
}

/**
 * Micro-payments with a monthly limit per line. The limit holds under concurrency because every
 * payment of a line takes the line's row lock (`FOR UPDATE`) before it sums the month and inserts:
 * payments of one line are serialised, payments of different lines are not. Idempotency rests on
 * the unique idempotency_key, so a retry racing its original still yields one payment.
 */
export class PaymentStore {
  constructor(
    private readonly knex: Knex,
    /** The carrier's time zone: it decides which month a payment counts against. */
    readonly timeZone: string,
  ) {}

  async record(p: NewPayment): Promise<{ payment: PaymentRow; replayed: boolean } & MonthTotals> {
    const month = monthIn(this.timeZone, p.occurredAt);
    return this.knex.transaction(async (trx) => {
      const line = await trx("subscriptions")
        .select<{ status: string; micro_payment_limit_krw: string }>("status", "micro_payment_limit_krw")
        .where("subscription_id", p.subscriptionId)
        .forUpdate()
        .first();
      if (!line) throw new ConnectError(`line ${p.subscriptionId} not found`, Code.NotFound);

      // Checked under the line lock: a concurrent retry of the same key on this line has committed by now.
      const earlier = await this.byKey(trx, p.idempotencyKey);
      if (earlier) return { payment: sameOrRefuse(earlier, p), replayed: true, ...(await this.totals(trx, earlier)) };

      // A new payment counts against the current month or none: billing closes a month once it
      // has passed, so a payment dated in a closed month would never be charged. (A retry of a
      // payment recorded before its month closed is answered above.)
      if (month < monthIn(this.timeZone, new Date())) {
        throw invalidArgument([
          {
            field: "occurred_at",
            description: `must not lie before the start of the current month (${this.timeZone}): that month is closed for billing`,
          },
        ]);
      }

      if (line.status !== "active") {
        throw new ConnectError(
          `line ${p.subscriptionId} is ${line.status}: it cannot be charged micro-payments`,
          Code.FailedPrecondition,
        );
      }
      const limitKrw = BigInt(line.micro_payment_limit_krw);
      const totalKrw = await this.sum(trx, p.subscriptionId, month);
      if (totalKrw + p.amountKrw > limitKrw) {
        throw new ConnectError(
          `monthly micro-payment limit exceeded for ${month}: ${totalKrw} KRW already charged + ${p.amountKrw} KRW > limit ${limitKrw} KRW`,
          Code.FailedPrecondition,
        );
      }
      const inserted = await trx("micro_payments")
        .insert({
          subscription_id: p.subscriptionId,
          merchant: p.merchant,
          amount_krw: String(p.amountKrw),
          occurred_at: p.occurredAt,
          month,
          idempotency_key: p.idempotencyKey,
        })
        // The same key used concurrently for another line (a different row lock): the unique key decides.
        .onConflict("idempotency_key")
        .ignore()
        .returning<PaymentRow[]>([...COLUMNS]);
      const row = inserted[0];
      if (row) return { payment: row, replayed: false, totalKrw: totalKrw + p.amountKrw, limitKrw };
      const winner = await this.byKey(trx, p.idempotencyKey);
      if (!winner) throw new ConnectError("payment vanished while recording it; retry", Code.Aborted);
      return { payment: sameOrRefuse(winner, p), replayed: true, ...(await this.totals(trx, winner)) };
    });
  }

  /** The line's payments of a month, oldest first, with the total and the line's limit; undefined if no such line. */
  async list(subscriptionId: string, month: string): Promise<({ payments: PaymentRow[] } & MonthTotals) | undefined> {
    const line = await this.knex("subscriptions")
      .select<{ micro_payment_limit_krw: string }>("micro_payment_limit_krw")
      .where("subscription_id", subscriptionId)
      .first();
    if (!line) return undefined;
    const payments = await this.knex<PaymentRow>("micro_payments")
      .select([...COLUMNS])
      .where({ subscription_id: subscriptionId, month })
      .orderBy([{ column: "occurred_at" }, { column: "payment_id" }]);
    const totalKrw = payments.reduce((s, r) => s + BigInt(r.amount_krw), 0n);
    return { payments, totalKrw, limitKrw: BigInt(line.micro_payment_limit_krw) };
  }

  private byKey(trx: Knex.Transaction, key: string): Promise<PaymentRow | undefined> {
    return trx<PaymentRow>("micro_payments")
      .select([...COLUMNS])
      .where("idempotency_key", key)
      .first();
  }

  private async sum(trx: Knex.Transaction, subscriptionId: string, month: string): Promise<bigint> {
    const r = await trx("micro_payments")
      .where({ subscription_id: subscriptionId, month })
      .sum<{ total: string | null }>({ total: "amount_krw" })
      .first();
    return BigInt(r?.total ?? 0);
  }

  private async totals(trx: Knex.Transaction, row: PaymentRow): Promise<MonthTotals> {
    const line = await trx("subscriptions")
      .select<{ micro_payment_limit_krw: string }>("micro_payment_limit_krw")
      .where("subscription_id", row.subscription_id)
      .first();
    return {
      totalKrw: await this.sum(trx, row.subscription_id, row.month),
      limitKrw: BigInt(line?.micro_payment_limit_krw ?? 0),
    };
  }
}

/**
 * A retry must describe the same payment; reusing a key for another one is the caller's error.
 * The refusal names nothing of the first payment (its line, amount, merchant or time): the key may
 * have been used for another subscriber's line.
 */
function sameOrRefuse(row: PaymentRow, p: NewPayment): PaymentRow {
  const same =
    row.subscription_id === p.subscriptionId &&
    BigInt(row.amount_krw) === p.amountKrw &&
    row.merchant === p.merchant &&
    (!p.occurredAtSet || row.occurred_at.getTime() === p.occurredAt.getTime());
  if (!same) {
    throw new ConnectError(
      `idempotency_key ${JSON.stringify(p.idempotencyKey)} was already used for another payment; use a new key for a new payment`,
      Code.AlreadyExists,
    );
  }
  return row;
}
