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
import { rejects } from "../../../test/support/assertions.js";
import { tokenFor } from "../../../test/support/auth.js";
import { grpcClient } from "../../../test/support/clients.js";
import { type RunningUnits, startUnits } from "../../../test/support/units.js";
import { fieldViolations } from "../../kit/src/errors.js";
import { makeLine } from "./fixture-lines.js";

let units: RunningUnits;
let gateway: ReturnType<typeof grpcClient<typeof MicroPaymentService>>;

const krw = (n: number | bigint) => ({ currencyCode: "KRW", amountMinor: BigInt(n) });

// Payments count against the current month only (in the carrier's time zone, Asia/Seoul: UTC+9
// all year), so the tests date theirs relative to now.
const SEOUL = 9 * 3_600_000;
const DAY = 24 * 3_600_000;
const seoulNow = new Date(Date.now() + SEOUL);
/** This month, "YYYY-MM" in Seoul. */
const thisMonth = seoulNow.toISOString().slice(0, 7);
/** The instant this month starts in Seoul. */
const monthStart = new Date(Date.UTC(seoulNow.getUTCFullYear(), seoulNow.getUTCMonth(), 1) - SEOUL);
/** Last month, "YYYY-MM" in Seoul. */
const lastMonth = new Date(monthStart.getTime() - 1 + SEOUL).toISOString().slice(0, 7);
/** An instant `ms` after the start of this month, but never in the future. */
const inMonth = (ms: number) => new Date(Math.min(monthStart.getTime() + ms, Date.now()));

/** A payment of a closed month, written directly (the service no longer accepts one). */
async function storeLastMonthPayment(line: string, amountKrw: number, key = randomUUID()) {
  const at = new Date(monthStart.getTime() - DAY);
  await units.knex.domain("micro_payments").insert({
    subscription_id: line,
    merchant: "m",
    amount_krw: amountKrw,
    occurred_at: at,
    month: lastMonth,
    idempotency_key: key,
  });
  return { key, at };
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
    const at = inMonth(9 * DAY + 3_600_000);
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
    const list = await gateway.listPayments({ subscriptionId: line, month: thisMonth });
    assert.deepEqual(
      list.payments.map((p) => [p.paymentId, p.merchant]),
      [[r.payment?.paymentId, "카카오게임즈"]],
    );
    assert.equal(list.monthTotal?.amountMinor, 12_000n);
    assert.equal(list.monthLimit?.amountMinor, 300_000n);
  });

  it("counts a payment in the month of its time in Asia/Seoul, not UTC", async () => {
    const line = await makeLine(units.knex.domain);
    // 00:30 on the 1st in Seoul is still last month in UTC.
    const at = inMonth(30 * 60_000);
    assert.equal(at.toISOString().slice(0, 7), lastMonth);
    await gateway.recordPayment({
      idempotencyKey: randomUUID(),
      subscriptionId: line,
      merchant: "m",
      amount: krw(1_000),
      occurredAt: timestampFromDate(at),
    });
    assert.equal((await gateway.listPayments({ subscriptionId: line, month: lastMonth })).payments.length, 0);
    assert.equal((await gateway.listPayments({ subscriptionId: line, month: thisMonth })).payments.length, 1);
  });

  it("is idempotent on the key: a retry returns the first payment, also when retries race", async () => {
    const line = await makeLine(units.knex.domain);
    const req = {
      idempotencyKey: `order-${randomUUID()}`,
      subscriptionId: line,
      merchant: "넷플릭스",
      amount: krw(9_500),
      occurredAt: timestampFromDate(inMonth(DAY)),
    };
    const results = await Promise.all(Array.from({ length: 10 }, () => gateway.recordPayment(req)));
    assert.equal(new Set(results.map((r) => r.payment?.paymentId)).size, 1, "one payment for one key");
    const again = await gateway.recordPayment(req);
    assert.equal(again.payment?.paymentId, results[0]?.payment?.paymentId);
    const list = await gateway.listPayments({ subscriptionId: line, month: thisMonth });
    assert.equal(list.payments.length, 1);
    assert.equal(list.monthTotal?.amountMinor, 9_500n);
  });

  it("replays a retry that leaves occurred_at unset (now), although now has moved on", async () => {
    const line = await makeLine(units.knex.domain);
    const req = { idempotencyKey: randomUUID(), subscriptionId: line, merchant: "m", amount: krw(700) };
    const first = await gateway.recordPayment(req);
    await new Promise((r) => setTimeout(r, 5));
    const again = await gateway.recordPayment(req);
    assert.equal(again.payment?.paymentId, first.payment?.paymentId);
  });

  it("refuses the same key for a different payment with ALREADY_EXISTS, naming nothing of the first", async () => {
    const line = await makeLine(units.knex.domain);
    const other = await makeLine(units.knex.domain);
    const key = randomUUID();
    const at = inMonth(2 * DAY);
    const first = { idempotencyKey: key, subscriptionId: line, merchant: "상점A", amount: krw(1_234) };
    await gateway.recordPayment({ ...first, occurredAt: timestampFromDate(at) });
    for (const changed of [
      { amount: krw(2_000) },
      { merchant: "상점B" },
      { subscriptionId: other },
      { occurredAt: timestampFromDate(new Date(at.getTime() - 1_000)) },
    ]) {
      const e = await rejects(
        gateway.recordPayment({ ...first, occurredAt: timestampFromDate(at), ...changed }),
        Code.AlreadyExists,
      );
      assert.match(e.message, /idempotency_key .* was already used for another payment; use a new key/);
      for (const secret of [line, "1234", "1,234", "상점A", at.toISOString()]) {
        assert.ok(!e.rawMessage.replace(key, "").includes(secret), `the refusal names ${secret} of the first payment`);
      }
    }
    const stored = await units.knex.domain("micro_payments").where({ idempotency_key: key });
    assert.equal(stored.length, 1);
    assert.equal((await gateway.listPayments({ subscriptionId: other, month: thisMonth })).payments.length, 0);
  });

  it("refuses occurred_at before this month (closed for billing) or more than 5 minutes ahead", async () => {
    const line = await makeLine(units.knex.domain);
    const base = { subscriptionId: line, merchant: "m", amount: krw(1_000) };
    for (const at of [
      new Date(monthStart.getTime() - 1),
      new Date("2020-01-01T00:00:00Z"),
      new Date(Date.now() + 6 * 60_000),
    ]) {
      const e = await rejects(
        gateway.recordPayment({ ...base, idempotencyKey: randomUUID(), occurredAt: timestampFromDate(at) }),
        Code.InvalidArgument,
      );
      assert.deepEqual(
        fieldViolations(e).map((v) => v.field),
        ["occurred_at"],
      );
    }
    assert.equal((await units.knex.domain("micro_payments").where({ subscription_id: line })).length, 0);
    // A little clock skew is tolerated, and the first instant of the month counts.
    for (const at of [new Date(Date.now() + 60_000), monthStart]) {
      await gateway.recordPayment({ ...base, idempotencyKey: randomUUID(), occurredAt: timestampFromDate(at) });
    }
    // A retry of a payment recorded before its month closed still gets its answer.
    const { key, at } = await storeLastMonthPayment(line, 1_000);
    const again = await gateway.recordPayment({ ...base, idempotencyKey: key, occurredAt: timestampFromDate(at) });
    assert.equal(again.payment?.idempotencyKey, key);
  });

  it("never lets concurrent payments take a line's month over its limit", async () => {
    const line = await makeLine(units.knex.domain);
    // Last month's payments count against last month's limit, not this one's.
    await storeLastMonthPayment(line, 300_000);
    // 20 × 20,000 = 400,000 KRW against the default 300,000 KRW limit.
    const settled = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        gateway.recordPayment({
          idempotencyKey: randomUUID(),
          subscriptionId: line,
          merchant: `shop-${i}`,
          amount: krw(20_000),
          occurredAt: timestampFromDate(inMonth(14 * DAY + 3_600_000)),
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
    assert.match(refused[0]?.message ?? "", new RegExp(`monthly micro-payment limit exceeded for ${thisMonth}`));
    const list = await gateway.listPayments({ subscriptionId: line, month: thisMonth });
    assert.equal(list.monthTotal?.amountMinor, 300_000n);
    const stored = await units.knex
      .domain("micro_payments")
      .where({ subscription_id: line, month: thisMonth })
      .sum({ s: "amount_krw" });
    assert.equal(BigInt(stored[0]?.s ?? 0), 300_000n, "the database holds exactly the limit");
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
    // Line ids have one form: 'L' and 10 digits.
    for (const subscriptionId of ["L123", "l0000000001", "L00000000012", "X0000000001", "L000000000a", "anything"]) {
      const bad = await rejects(
        gateway.recordPayment({ ...base, subscriptionId, amount: krw(1) }),
        Code.InvalidArgument,
      );
      assert.deepEqual(
        fieldViolations(bad).map((v) => v.field),
        ["subscription_id"],
      );
      await rejects(gateway.listPayments({ subscriptionId, month: thisMonth }), Code.InvalidArgument);
    }
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
    assert.equal((await me.listPayments({ subscriptionId: mine, month: thisMonth })).payments.length, 0);
    await rejects(me.listPayments({ subscriptionId: theirs, month: thisMonth }), Code.PermissionDenied);
    await rejects(
      me.recordPayment({ idempotencyKey: randomUUID(), subscriptionId: mine, merchant: "m", amount: krw(1) }),
      Code.PermissionDenied,
    );
  });
});
