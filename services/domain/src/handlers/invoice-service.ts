import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  type GetInvoiceRequest,
  GetInvoiceResponseSchema,
  type Invoice,
  InvoiceLineKind,
  InvoiceSchema,
  type InvoiceService,
  type ListInvoicesRequest,
  ListInvoicesResponseSchema,
} from "../../../../gen/telco/domain/v1/invoice_pb.js";
import { assertLineAccess, principalOf } from "../../../kit/src/auth.js";
import {
  decodePageToken,
  encodePageToken,
  ID_RE,
  MONTH_RE,
  notFound,
  pageSize,
  Violations,
} from "../../../kit/src/errors.js";
import type { InvoiceLineRow, InvoiceRow, InvoiceStore } from "../store/invoice-store.js";

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const KINDS: Record<string, InvoiceLineKind> = {
  plan_fee: InvoiceLineKind.PLAN_FEE,
  vas_fee: InvoiceLineKind.VAS_FEE,
  discount: InvoiceLineKind.DISCOUNT,
  micro_payment: InvoiceLineKind.MICRO_PAYMENT,
  data_overage: InvoiceLineKind.DATA_OVERAGE,
  adjustment: InvoiceLineKind.ADJUSTMENT,
  vat: InvoiceLineKind.VAT,
};

const krw = (amount: string) => ({ currencyCode: "KRW", amountMinor: BigInt(amount) });

function toInvoice(r: InvoiceRow, lines: InvoiceLineRow[] = []): Invoice {
  return create(InvoiceSchema, {
    invoiceId: r.invoice_id,
    invoiceNumber: r.invoice_number,
    subscriptionId: r.subscription_id,
    month: r.month,
    subtotal: krw(r.subtotal_krw),
    vat: krw(r.vat_krw),
    total: krw(r.total_krw),
    issuedAt: timestampFromDate(r.issued_at),
    dueDate: r.due_date,
    lines: lines.map((l) => ({
      lineNo: l.line_no,
      kind: KINDS[l.kind] ?? InvoiceLineKind.UNSPECIFIED,
      description: l.description,
      amount: krw(l.amount_krw),
      refId: l.ref_id,
    })),
  });
}

export class InvoiceServiceImpl implements ServiceImpl<typeof InvoiceService> {
  constructor(private readonly store: InvoiceStore) {}

  async getInvoice(req: GetInvoiceRequest, ctx: HandlerContext) {
    const v = new Violations();
    const caller = principalOf(ctx);
    let row: InvoiceRow | undefined;
    let what: string;
    switch (req.key.case) {
      case "invoiceId": {
        v.check(UUID_RE.test(req.key.value), "invoice_id", "must be a UUID");
        v.throwIfAny();
        what = `invoice ${req.key.value}`;
        row = await this.store.byId(req.key.value.toLowerCase());
        break;
      }
      case "lineMonth": {
        const { subscriptionId, month } = req.key.value;
        v.check(ID_RE.test(subscriptionId), "line_month.subscription_id", "required: a line id such as L0000000001");
        v.check(MONTH_RE.test(month), "line_month.month", 'required: "YYYY-MM"');
        v.throwIfAny();
        assertLineAccess(caller, subscriptionId);
        what = `invoice of line ${subscriptionId} for ${month}`;
        row = await this.store.byLineMonth(subscriptionId, month);
        break;
      }
      default:
        v.add("key", "set invoice_id or line_month").throwIfAny();
        return create(GetInvoiceResponseSchema); // unreachable: throwIfAny threw
    }
    if (!row) throw notFound(what);
    assertLineAccess(caller, row.subscription_id);
    return create(GetInvoiceResponseSchema, { invoice: toInvoice(row, await this.store.lines(row.invoice_id)) });
  }

  async listInvoices(req: ListInvoicesRequest, ctx: HandlerContext) {
    const v = new Violations();
    v.check(ID_RE.test(req.subscriptionId), "subscription_id", "required: a line id such as L0000000001");
    const limit = pageSize(req.pageSize, 12, 60, v);
    const before = decodePageToken(req.pageToken, v);
    if (before !== undefined)
      v.check(
        typeof before === "string" && MONTH_RE.test(before),
        "page_token",
        "not a token returned by a previous call",
      );
    v.throwIfAny();
    assertLineAccess(principalOf(ctx), req.subscriptionId);
    const rows = await this.store.list(req.subscriptionId, {
      beforeMonth: before === undefined ? undefined : String(before),
      limit: limit + 1,
    });
    if (rows.length === 0 && before === undefined && !(await this.store.lineExists(req.subscriptionId))) {
      throw notFound(`line ${req.subscriptionId}`);
    }
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return create(ListInvoicesResponseSchema, {
      invoices: page.map((r) => toInvoice(r)),
      nextPageToken: rows.length > limit && last ? encodePageToken(last.month) : "",
    });
  }
}
