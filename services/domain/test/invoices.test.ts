/**
 * InvoiceService reads what the batch unit writes: invoices are inserted here with SQL into schema
 * `billing`, as the billing job would, and read back through the API by id, by line and month, and
 * as a paged list; subscribers see only their own lines' invoices.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Code } from "@connectrpc/connect";
import { InvoiceLineKind, InvoiceService } from "../../../gen/telco/domain/v1/invoice_pb.js";
import { rejects } from "../../../test/support/assertions.js";
import { tokenFor } from "../../../test/support/auth.js";
import { grpcClient } from "../../../test/support/clients.js";
import { type RunningUnits, startUnits } from "../../../test/support/units.js";
import { fieldViolations } from "../../kit/src/errors.js";
import { makeLine } from "./fixture-lines.js";

let units: RunningUnits;
let staff: ReturnType<typeof grpcClient<typeof InvoiceService>>;
let executionId: string;

/** Writes one invoice with its lines as the billing job's tables hold them: the month's next number, one transaction. */
async function issue(line: string, month: string, planFee = 69_000, discount = 17_250): Promise<string> {
  return units.knex.billing.transaction(async (trx) => {
    await trx.raw("lock table billing.invoices in share row exclusive mode");
    const { rows } = await trx.raw<{ rows: { n: number }[] }>(
      "select coalesce(max(right(invoice_number, 7)::int), 0) + 1 as n from billing.invoices where month = ?",
      [month],
    );
    const number = `${month}-${String(rows[0]?.n).padStart(7, "0")}`;
    const subtotal = planFee - discount;
    const vat = Math.round(subtotal / 10);
    const [inv] = await trx("billing.invoices")
      .insert({
        invoice_number: number,
        subscription_id: line,
        month,
        subtotal_krw: subtotal,
        vat_krw: vat,
        total_krw: subtotal + vat,
        issued_at: new Date(`${month}-01T00:00:00Z`),
        due_date: `${month}-25`,
        job_execution_id: executionId,
      })
      .returning<{ invoice_id: string }[]>("invoice_id");
    const id = inv?.invoice_id as string;
    await trx("billing.invoice_lines").insert([
      {
        invoice_id: id,
        line_no: 1,
        kind: "plan_fee",
        description: "5G 스탠다드 110GB",
        amount_krw: planFee,
        ref_id: "5G-STD-110G",
      },
      {
        invoice_id: id,
        line_no: 2,
        kind: "discount",
        description: "선택약정 25%",
        amount_krw: -discount,
        ref_id: "CONTRACT-25",
      },
      { invoice_id: id, line_no: 3, kind: "vat", description: "부가가치세 10%", amount_krw: vat },
    ]);
    return id;
  });
}

before(async () => {
  units = await startUnits();
  staff = grpcClient(InvoiceService, units.at.domain.url, await tokenFor("viewer"));
  const [instance] = await units.knex
    .billing("billing.job_instance")
    .insert({ job_name: "invoice-test", job_key: randomUUID(), parameters: {} })
    .returning<{ job_instance_id: string }[]>("job_instance_id");
  const [execution] = await units.knex
    .billing("billing.job_execution")
    .insert({ job_instance_id: instance?.job_instance_id, status: "COMPLETED" })
    .returning<{ job_execution_id: string }[]>("job_execution_id");
  executionId = execution?.job_execution_id as string;
});
after(async () => {
  await units?.stop();
});

describe("InvoiceService", () => {
  it("returns an invoice with its lines by id and by line and month", async () => {
    const line = await makeLine(units.knex.domain);
    const id = await issue(line, "2026-10");
    const byId = (await staff.getInvoice({ key: { case: "invoiceId", value: id } })).invoice;
    assert.equal(byId?.subscriptionId, line);
    assert.equal(byId?.month, "2026-10");
    assert.match(byId?.invoiceNumber ?? "", /^2026-10-\d{7}$/);
    assert.equal(byId?.subtotal?.amountMinor, 51_750n);
    assert.equal(byId?.vat?.amountMinor, 5_175n);
    assert.equal(byId?.total?.amountMinor, 56_925n);
    assert.equal(byId?.total?.currencyCode, "KRW");
    assert.equal(byId?.dueDate, "2026-10-25");
    assert.deepEqual(
      byId?.lines.map((l) => [l.lineNo, l.kind, l.amount?.amountMinor, l.refId]),
      [
        [1, InvoiceLineKind.PLAN_FEE, 69_000n, "5G-STD-110G"],
        [2, InvoiceLineKind.DISCOUNT, -17_250n, "CONTRACT-25"],
        [3, InvoiceLineKind.VAT, 5_175n, ""],
      ],
    );
    const byMonth = await staff.getInvoice({
      key: { case: "lineMonth", value: { subscriptionId: line, month: "2026-10" } },
    });
    assert.equal(byMonth.invoice?.invoiceId, id);
    assert.equal(byMonth.invoice?.lines.length, 3);
  });

  it("the database keeps one invoice per line and month", async () => {
    const line = await makeLine(units.knex.domain);
    await issue(line, "2026-09");
    await assert.rejects(issue(line, "2026-09"), /invoices_subscription_id_month_key/);
  });

  it("answers NOT_FOUND for a missing invoice or line, and names bad fields", async () => {
    const line = await makeLine(units.knex.domain);
    await rejects(staff.getInvoice({ key: { case: "invoiceId", value: randomUUID() } }), Code.NotFound);
    await rejects(
      staff.getInvoice({ key: { case: "lineMonth", value: { subscriptionId: line, month: "2026-01" } } }),
      Code.NotFound,
    );
    await rejects(staff.listInvoices({ subscriptionId: "L9999999999" }), Code.NotFound);
    assert.deepEqual((await staff.listInvoices({ subscriptionId: line })).invoices, []);
    const bad = await rejects(staff.getInvoice({ key: { case: "invoiceId", value: "nope" } }), Code.InvalidArgument);
    assert.deepEqual(
      fieldViolations(bad).map((v) => v.field),
      ["invoice_id"],
    );
    const none = await rejects(staff.getInvoice({}), Code.InvalidArgument);
    assert.deepEqual(
      fieldViolations(none).map((v) => v.field),
      ["key"],
    );
    const paging = await rejects(
      staff.listInvoices({ subscriptionId: line, pageSize: 61, pageToken: "garbage" }),
      Code.InvalidArgument,
    );
    assert.deepEqual(
      fieldViolations(paging)
        .map((v) => v.field)
        .sort(),
      ["page_size", "page_token"],
    );
  });

  it("lists a line's invoices newest month first, in pages", async () => {
    const line = await makeLine(units.knex.domain);
    const months = Array.from(
      { length: 14 },
      (_, i) => `${2025 + Math.floor((i + 9) / 12)}-${String(((i + 9) % 12) + 1).padStart(2, "0")}`,
    );
    for (const m of months) await issue(line, m);
    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = await staff.listInvoices({ subscriptionId: line, pageSize: 5, pageToken: token });
      assert.ok(
        page.invoices.every((i) => i.lines.length === 0),
        "lists carry no lines",
      );
      seen.push(...page.invoices.map((i) => i.month));
      token = page.nextPageToken;
      pages++;
    } while (token);
    assert.equal(pages, 3);
    assert.deepEqual(seen, [...months].sort().reverse());
    const first = await staff.listInvoices({ subscriptionId: line });
    assert.equal(first.invoices.length, 12, "12 per page by default");
  });

  it("lets a subscriber see only their own lines' invoices", async () => {
    const mine = await makeLine(units.knex.domain);
    const theirs = await makeLine(units.knex.domain);
    const myId = await issue(mine, "2026-10");
    const theirId = await issue(theirs, "2026-10");
    const me = grpcClient(InvoiceService, units.at.domain.url, await tokenFor("subscriber", [mine]));
    assert.equal((await me.getInvoice({ key: { case: "invoiceId", value: myId } })).invoice?.subscriptionId, mine);
    assert.equal((await me.listInvoices({ subscriptionId: mine })).invoices.length, 1);
    await rejects(me.getInvoice({ key: { case: "invoiceId", value: theirId } }), Code.PermissionDenied);
    await rejects(
      me.getInvoice({ key: { case: "lineMonth", value: { subscriptionId: theirs, month: "2026-10" } } }),
      Code.PermissionDenied,
    );
    await rejects(me.listInvoices({ subscriptionId: theirs }), Code.PermissionDenied);
  });
});
