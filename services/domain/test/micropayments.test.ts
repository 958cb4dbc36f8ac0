/**
 * MicroPaymentService on a real server and the real test database: idempotency on the key (also
 * when retries race), the monthly limit under concurrency, months in the carrier's time zone,
 * clear errors, and subscribers confined to their own lines.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { MicroPaymentService } from "../../../gen/telco/domain/v1/micropayment_pb.js";
import { tokenFor } from "../../../test/support/auth.js";
import { grpcClient } from "../../../test/support/clients.js";
import { type RunningUnits, startUnits } from "../../../test/support/units.js";
import { fieldViolations } from "../../kit/src/errors.js";
import { makeLine } from "./fixture-lines.js";

let units: RunningUnits;
let gateway: ReturnType<typeof grpcClient<typeof MicroPaymentService>>;

const krw = (n: number | bigint) => ({ currencyCode: "KRW", amountMinor: BigInt(n) });

async function rejects(p: Promise<unknown>, code: Code): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    const ce = ConnectError.from(e);
    assert.equal(ce.code, code, `expected ${Code[code]}, got ${Code[ce.code]}: ${ce.message}`);
    return ce;
  }
  assert.fail(`expected ${Code[code]}, but the call succeeded`);
}

before(async () => {
  units = await startUnits();
  gateway = grpcClient(MicroPaymentService, units.at.domain.url, await tokenFor("service", [], "payment-gateway"));
});
after(async () => {
  await units?.stop();
});

describe("MicroPaymentService", () => {
  it("records a payment and lists it with the month's total and limit", async () => {
    const line = await makeLine(units.knex.domain);
    const at = new Date("2026-11-10T03:00:00Z");
    const r = await gateway.recordPayment({
      idempotencyKey: randomUUID(),
      subscriptionId: line,
      merchant: "카카오게임즈",
      amount: krw(12_000),
      occurredAt: timestampFromDate(at),
    });
    assert.equal(r.payment?.amount?.amountMinor, 12_000n);
    assert.equal(r.monthTotal?.amountMinor, 12_000n);
    assert.equal(r.monthLimit?.amountMinor, 300_000n);
    const list = await gateway.listPayments({ subscriptionId: line, month: "2026-11" });
    assert.deepEqual(
      list.payments.map((p) => [p.paymentId, p.merchant]),
      [[r.payment?.paymentId, "카카오게임즈"]],
    );
    assert.equal(list.monthTotal?.amountMinor, 12_000n);
    assert.equal(list.monthLimit?.amountMinor, 300_000n);
  });

  it("counts a payment in the month of its time in Asia/Seoul, not UTC", async () => {
    const line = await makeLine(units.knex.domain);
    // 2026-10-31 15:30 UTC is 2026-11-01 00:30 in Seoul.
    await gateway.recordPayment({
      idempotencyKey: randomUUID(),
      subscriptionId: line,
      merchant: "m",
      amount: krw(1_000),
      occurredAt: timestampFromDate(new Date("2026-10-31T15:30:00Z")),
    });
    assert.equal((await gateway.listPayments({ subscriptionId: line, month: "2026-10" })).payments.length, 0);
    assert.equal((await gateway.listPayments({ subscriptionId: line, month: "2026-11" })).payments.length, 1);
  });

  it("is idempotent on the key: a retry returns the first payment, also when retries race", async () => {
    const line = await makeLine(units.knex.domain);
    const req = {
      idempotencyKey: `order-${randomUUID()}`,
      subscriptionId: line,
      merchant: "넷플릭스",
      amount: krw(9_500),
      occurredAt: timestampFromDate(new Date("2026-11-02T00:00:00Z")),
    };
    const results = await Promise.all(Array.from({ length: 10 }, () => gateway.recordPayment(req)));
    assert.equal(new Set(results.map((r) => r.payment?.paymentId)).size, 1, "one payment for one key");
    const again = await gateway.recordPayment(req);
    assert.equal(again.payment?.paymentId, results[0]?.payment?.paymentId);
    const list = await gateway.listPayments({ subscriptionId: line, month: "2026-11" });
    assert.equal(list.payments.length, 1);
    assert.equal(list.monthTotal?.amountMinor, 9_500n);
  });

  it("refuses the same key for a different payment with ALREADY_EXISTS", async () => {
    const line = await makeLine(units.knex.domain);
    const key = randomUUID();
    await gateway.recordPayment({ idempotencyKey: key, subscriptionId: line, merchant: "m", amount: krw(1_000) });
    const e = await rejects(
      gateway.recordPayment({ idempotencyKey: key, subscriptionId: line, merchant: "m", amount: krw(2_000) }),
      Code.AlreadyExists,
    );
    assert.match(e.message, /idempotency_key .* already used for another payment \(amount 1000 KRW\)/);
  });

  it("never lets concurrent payments take a line's month over its limit", async () => {
    const line = await makeLine(units.knex.domain);
    // 20 × 20,000 = 400,000 KRW against the default 300,000 KRW limit.
    const settled = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        gateway.recordPayment({
          idempotencyKey: randomUUID(),
          subscriptionId: line,
          merchant: `shop-${i}`,
          amount: krw(20_000),
          occurredAt: timestampFromDate(new Date("2026-11-15T01:00:00Z")),
        }),
      ),
    );
    const ok = settled.filter((s) => s.status === "fulfilled");
    const refused = settled.flatMap((s) => (s.status === "rejected" ? [ConnectError.from(s.reason)] : []));
    assert.equal(ok.length, 15);
    assert.deepEqual(
      refused.map((e) => e.code),
      Array(5).fill(Code.FailedPrecondition),
    );
    assert.match(refused[0]?.message ?? "", /monthly micro-payment limit exceeded for 2026-11/);
    const list = await gateway.listPayments({ subscriptionId: line, month: "2026-11" });
    assert.equal(list.monthTotal?.amountMinor, 300_000n);
    const stored = await units.knex.domain("micro_payments").where({ subscription_id: line }).sum({ s: "amount_krw" });
    assert.equal(BigInt(stored[0]?.s ?? 0), 300_000n, "the database holds exactly the limit");
    // Another month has its own limit.
    await gateway.recordPayment({
      idempotencyKey: randomUUID(),
      subscriptionId: line,
      merchant: "m",
      amount: krw(20_000),
      occurredAt: timestampFromDate(new Date("2026-10-15T01:00:00Z")),
    });
  });

  it("enforces a line's own limit", async () => {
    const line = await makeLine(units.knex.domain, { limitKrw: 5_000 });
    await gateway.recordPayment({
      idempotencyKey: randomUUID(),
      subscriptionId: line,
      merchant: "m",
      amount: krw(5_000),
    });
    await rejects(
      gateway.recordPayment({ idempotencyKey: randomUUID(), subscriptionId: line, merchant: "m", amount: krw(1) }),
      Code.FailedPrecondition,
    );
  });

  it("names the offending fields of a bad request", async () => {
    const line = await makeLine(units.knex.domain);
    const base = { idempotencyKey: randomUUID(), subscriptionId: line, merchant: "m" };
    for (const [amount, field] of [
      [krw(0), "amount.amount_minor"],
      [krw(-5), "amount.amount_minor"],
      [{ currencyCode: "USD", amountMinor: 10n }, "amount.currency_code"],
      [undefined, "amount"],
    ] as const) {
      const e = await rejects(gateway.recordPayment({ ...base, amount }), Code.InvalidArgument);
      assert.deepEqual(
        fieldViolations(e).map((v) => v.field),
        [field],
      );
    }
    const e = await rejects(
      gateway.recordPayment({ idempotencyKey: "", subscriptionId: "", merchant: "", amount: krw(1) }),
      Code.InvalidArgument,
    );
    assert.deepEqual(
      fieldViolations(e)
        .map((v) => v.field)
        .sort(),
      ["idempotency_key", "merchant", "subscription_id"],
    );
    await rejects(gateway.listPayments({ subscriptionId: line, month: "2026-13" }), Code.InvalidArgument);
  });

  it("answers NOT_FOUND for an unknown line and FAILED_PRECONDITION for a terminated one", async () => {
    const req = { idempotencyKey: randomUUID(), merchant: "m", amount: krw(1_000) };
    await rejects(gateway.recordPayment({ ...req, subscriptionId: "L9999999999" }), Code.NotFound);
    await rejects(gateway.listPayments({ subscriptionId: "L9999999999", month: "2026-11" }), Code.NotFound);
    const gone = await makeLine(units.knex.domain, { status: "terminated" });
    const e = await rejects(gateway.recordPayment({ ...req, subscriptionId: gone }), Code.FailedPrecondition);
    assert.match(e.message, /terminated/);
  });

  it("lets a subscriber read only their own lines' payments, and not record any", async () => {
    const mine = await makeLine(units.knex.domain);
    const theirs = await makeLine(units.knex.domain);
    const me = grpcClient(MicroPaymentService, units.at.domain.url, await tokenFor("subscriber", [mine]));
    assert.equal((await me.listPayments({ subscriptionId: mine, month: "2026-11" })).payments.length, 0);
    await rejects(me.listPayments({ subscriptionId: theirs, month: "2026-11" }), Code.PermissionDenied);
    await rejects(
      me.recordPayment({ idempotencyKey: randomUUID(), subscriptionId: mine, merchant: "m", amount: krw(1) }),
      Code.PermissionDenied,
    );
  });
});
