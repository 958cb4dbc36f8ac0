import { create } from "@bufbuild/protobuf";
import type { Knex } from "knex";
import {
  CreateCustomerResponseSchema,
  type UpdateCustomerResponse,
  UpdateCustomerResponseSchema,
} from "../../../../gen/telco/domain/v1/customer_pb.js";
import { type AuditEntry, recordAudit } from "../audit.js";
import { once } from "../idempotency.js";
import type { PiiCipher } from "../pii/cipher.js";
import { maskName } from "../pii/normalise.js";

/**
 * The associated data every sealed column is bound to: a ciphertext copied into another column
 * (or another table) does not open there. Whoever writes these columns (the seed too) uses these.
 */
export const SEAL_CONTEXT = {
  name: "customers.name",
  phone: "customers.phone",
  email: "customers.email",
  birthDate: "customers.birth_date",
  number: "numbers.number",
} as const;

/** The `kind` of each blind index (HMAC input prefix), so equal strings of two kinds never match. */
export const INDEX_KIND = { phone: "phone", email: "email" } as const;

/** A customer's personal values in clear and normalised: phone as digits, e-mail lower-case. */
export interface CustomerFields {
  name: string;
  phone: string;
  email: string | undefined;
  birthDate: string;
}

export interface CustomerRow {
  customer_id: string;
  name_sealed: Buffer;
  name_masked: string;
  phone_sealed: Buffer;
  phone_index: Buffer;
  email_sealed: Buffer | null;
  email_index: Buffer | null;
  birth_date_sealed: Buffer;
  key_id: string;
  create_request_id: string | null;
  created_at: Date;
  updated_at: Date;
}

/** A customer opened in memory; never logged, never stored like this. */
export interface OpenCustomer extends CustomerFields {
  customerId: string;
  createdAt: Date;
  updatedAt: Date;
}

export interface CustomerLineRow {
  subscription_id: string;
  customer_id: string;
  status: "active" | "suspended" | "terminated";
  activated_at: Date;
  terminated_at: Date | null;
  number_sealed: Buffer;
  plan_id: string | null;
  quota_bytes: string | null;
}

export type CustomerQuery = { phone: string } | { email: string } | { namePrefix: string };

/** The columns of a customer row that hold personal data, sealed with the active key. */
export function sealCustomer(pii: PiiCipher, f: CustomerFields) {
  return {
    name_sealed: pii.seal(f.name, SEAL_CONTEXT.name),
    name_masked: maskName(f.name),
    phone_sealed: pii.seal(f.phone, SEAL_CONTEXT.phone),
    phone_index: pii.blindIndex(INDEX_KIND.phone, f.phone),
    email_sealed: f.email === undefined ? null : pii.seal(f.email, SEAL_CONTEXT.email),
    email_index: f.email === undefined ? null : pii.blindIndex(INDEX_KIND.email, f.email),
    birth_date_sealed: pii.seal(f.birthDate, SEAL_CONTEXT.birthDate),
    key_id: pii.activeKeyId,
  };
}

const CREATE_METHOD = "telco.domain.v1.CustomerService/CreateCustomer";
const UPDATE_METHOD = "telco.domain.v1.CustomerService/UpdateCustomer";

class NoSuchCustomer extends Error {}

export class CustomerStore {
  constructor(
    private readonly knex: Knex,
    private readonly pii: PiiCipher,
  ) {}

  /** Opens a row; a value that fails authentication throws PiiError (naming the column, not the value). */
  open(row: CustomerRow): OpenCustomer {
    return {
      customerId: row.customer_id,
      ...this.openContact(row),
      phone: this.pii.open(row.phone_sealed, SEAL_CONTEXT.phone),
      birthDate: this.pii.open(row.birth_date_sealed, SEAL_CONTEXT.birthDate),
      createdAt: row.created_at,
      updatedAt: row.updated_at,
    };
  }

  /** Opens only what a message to the customer needs: their name and e-mail (undefined when none). */
  openContact(row: CustomerRow): Pick<CustomerFields, "name" | "email"> {
    return {
      name: this.pii.open(row.name_sealed, SEAL_CONTEXT.name),
      email: row.email_sealed ? this.pii.open(row.email_sealed, SEAL_CONTEXT.email) : undefined,
    };
  }

  openNumber(sealed: Buffer): string {
    return this.pii.open(sealed, SEAL_CONTEXT.number);
  }

  /**
   * Creates a customer once per request id: a retry of the same request (same fingerprint, see
   * idempotency.ts), even a concurrent one, gets the first customer back; the same id with a
   * different request is refused with ALREADY_EXISTS and creates nothing. The kept answer holds
   * only the customer id (no personal data, not even masked); the row is read afresh.
   */
  async create(
    requestId: string,
    fingerprint: Buffer,
    f: CustomerFields,
  ): Promise<{ row: CustomerRow; created: boolean }> {
    let created = false;
    const row = await this.knex.transaction(async (trx) => {
      const answer = await once(trx, CREATE_METHOD, requestId, fingerprint, CreateCustomerResponseSchema, async () => {
        const [inserted] = (await trx("domain.customers")
          .insert({ ...sealCustomer(this.pii, f), create_request_id: requestId })
          .onConflict("create_request_id")
          .ignore()
          .returning("customer_id")) as Pick<CustomerRow, "customer_id">[];
        created = inserted !== undefined;
        // No insert: a customer created by this request id before fingerprints were kept.
        const id =
          inserted?.customer_id ??
          (
            (await trx("domain.customers").where({ create_request_id: requestId }).first("customer_id")) as
              | Pick<CustomerRow, "customer_id">
              | undefined
          )?.customer_id;
        if (!id) throw new Error(`customer of request ${requestId} vanished after a conflicting insert`);
        return create(CreateCustomerResponseSchema, { customer: { customerId: id } });
      });
      const customerId = answer.customer?.customerId ?? "";
      return (await trx("domain.customers").where({ customer_id: customerId }).first()) as CustomerRow | undefined;
    });
    if (!row) throw new Error(`customer of request ${requestId} vanished`);
    return { row, created };
  }

  async get(customerId: string): Promise<CustomerRow | undefined> {
    return (await this.knex("domain.customers").where({ customer_id: customerId }).first()) as CustomerRow | undefined;
  }

  /** Reads a customer and records the reveal in the audit log in one transaction: no read without its entry. */
  async getAudited(customerId: string, audit: Omit<AuditEntry, "targetId" | "targetType">) {
    return this.knex.transaction(async (trx) => {
      const row = (await trx("domain.customers").where({ customer_id: customerId }).first()) as CustomerRow | undefined;
      if (row) await recordAudit(trx, { ...audit, targetType: "customer", targetId: customerId });
      return row;
    });
  }

  /**
   * Applies `changes` once per request id (domain.idempotency_keys keeps the masked answer, and a
   * retry of the same request gets it back; the same id with a different request is refused, see
   * idempotency.ts). Every value of the row is sealed again with the active key, so the row's
   * key_id stays true. Undefined: no such customer (not stored: a retry is judged afresh).
   */
  async update(
    requestId: string,
    fingerprint: Buffer,
    customerId: string,
    changes: Partial<CustomerFields>,
    respond: (c: OpenCustomer) => UpdateCustomerResponse,
  ): Promise<UpdateCustomerResponse | undefined> {
    try {
      return await this.knex.transaction(async (trx) => {
        return once(trx, UPDATE_METHOD, requestId, fingerprint, UpdateCustomerResponseSchema, async () => {
          const row = (await trx("domain.customers").where({ customer_id: customerId }).forUpdate().first()) as
            | CustomerRow
            | undefined;
          if (!row) throw new NoSuchCustomer();
          const current = this.open(row);
          const next: CustomerFields = {
            name: changes.name ?? current.name,
            phone: changes.phone ?? current.phone,
            email: "email" in changes ? changes.email : current.email,
            birthDate: changes.birthDate ?? current.birthDate,
          };
          const [updated] = (await trx("domain.customers")
            .where({ customer_id: customerId })
            .update({ ...sealCustomer(this.pii, next), updated_at: trx.fn.now() })
            .returning("*")) as CustomerRow[];
          return respond(this.open(updated as CustomerRow));
        });
      });
    } catch (e) {
      if (e instanceof NoSuchCustomer) return undefined;
      throw e;
    }
  }

  /** Exact match through the blind indexes, or a prefix of the masked name; keyset-paged by id. */
  async search(q: CustomerQuery, limit: number, afterId?: string): Promise<CustomerRow[]> {
    const query = this.knex("domain.customers").orderBy("customer_id").limit(limit);
    if ("phone" in q) query.where({ phone_index: this.pii.blindIndex(INDEX_KIND.phone, q.phone) });
    else if ("email" in q) query.where({ email_index: this.pii.blindIndex(INDEX_KIND.email, q.email) });
    else query.whereLike("name_masked", `${q.namePrefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
    if (afterId) query.where("customer_id", ">", afterId);
    return (await query) as CustomerRow[];
  }

  /** Whether one of these lines belongs to the customer (a subscriber asking about themself). */
  async ownsAnyLine(customerId: string, subscriptionIds: string[]): Promise<boolean> {
    if (subscriptionIds.length === 0) return false;
    const row = await this.knex("domain.subscriptions")
      .where({ customer_id: customerId })
      .whereIn("subscription_id", subscriptionIds)
      .first("subscription_id");
    return row !== undefined;
  }

  /** The customer's lines, newest first, with the plan in force now and its quota. */
  async lines(customerId: string): Promise<CustomerLineRow[]> {
    return (await this.knex("domain.subscriptions as s")
      .join("domain.numbers as n", "n.number_id", "s.number_id")
      .leftJoin("domain.subscription_plan as sp", (j) =>
        j.on("sp.subscription_id", "s.subscription_id").andOn(this.knex.raw("sp.valid @> now()")),
      )
      .leftJoin("domain.plans as p", "p.plan_id", "sp.plan_id")
      .where("s.customer_id", customerId)
      .orderBy([
        { column: "s.activated_at", order: "desc" },
        { column: "s.subscription_id", order: "desc" },
      ])
      .select(
        "s.subscription_id",
        "s.customer_id",
        "s.status",
        "s.activated_at",
        "s.terminated_at",
        "n.number_sealed",
        "sp.plan_id",
        "p.quota_bytes",
      )) as CustomerLineRow[];
  }
}
