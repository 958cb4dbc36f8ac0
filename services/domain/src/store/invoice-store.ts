import type { Knex } from "knex";

export interface InvoiceRow {
  invoice_id: string;
  invoice_number: string;
  subscription_id: string;
  month: string;
  subtotal_krw: string;
  vat_krw: string;
  total_krw: string;
  issued_at: Date;
  /** "YYYY-MM-DD" (read as text: a date has no time zone to shift it). */
  due_date: string;
}

export interface InvoiceLineRow {
  invoice_id: string;
  line_no: number;
  kind: string;
  description: string;
  amount_krw: string;
  ref_id: string;
}

const INVOICE_COLUMNS = [
  "invoice_id",
  "invoice_number",
  "subscription_id",
  "month",
  "subtotal_krw",
  "vat_krw",
  "total_krw",
  "issued_at",
] as const;

/**
 * Reads the invoices the batch unit writes into schema `billing` of the shared database (DESIGN's
 * billing flow). Read only: the domain unit never writes there. Names are schema-qualified because
 * the domain pool's search_path is `domain, public`.
 */
export class InvoiceStore {
  constructor(private readonly knex: Knex) {}

  private invoices() {
    return this.knex("billing.invoices").select<InvoiceRow[]>([
      ...INVOICE_COLUMNS,
      this.knex.raw("due_date::text as due_date"),
    ]);
  }

  async byId(invoiceId: string): Promise<InvoiceRow | undefined> {
    return (await this.invoices().where("invoice_id", invoiceId).limit(1))[0];
  }

  async byLineMonth(subscriptionId: string, month: string): Promise<InvoiceRow | undefined> {
    return (await this.invoices().where({ subscription_id: subscriptionId, month }).limit(1))[0];
  }

  async lines(invoiceId: string): Promise<InvoiceLineRow[]> {
    return this.knex<InvoiceLineRow>("billing.invoice_lines")
      .select("invoice_id", "line_no", "kind", "description", "amount_krw", "ref_id")
      .where("invoice_id", invoiceId)
      .orderBy("line_no");
  }

  /** A line's invoices, newest month first; keyset paging on the month (the unique (line, month) index). */
  async list(subscriptionId: string, opts: { beforeMonth?: string; limit: number }): Promise<InvoiceRow[]> {
    const q = this.invoices().where("subscription_id", subscriptionId).orderBy("month", "desc").limit(opts.limit);
    if (opts.beforeMonth !== undefined) q.where("month", "<", opts.beforeMonth);
    return q;
  }

  async lineExists(subscriptionId: string): Promise<boolean> {
    const r = await this.knex("domain.subscriptions")
      .select("subscription_id")
      .where({ subscription_id: subscriptionId })
      .first();
    return r !== undefined;
  }
}
