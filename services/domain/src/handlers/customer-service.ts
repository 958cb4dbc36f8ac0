import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type CreateCustomerRequest,
  CreateCustomerRequestSchema,
  CreateCustomerResponseSchema,
  type Customer,
  CustomerSchema,
  type CustomerService,
  type GetCustomerRequest,
  GetCustomerResponseSchema,
  type ListCustomerLinesRequest,
  ListCustomerLinesResponseSchema,
  type SearchCustomersRequest,
  SearchCustomersResponseSchema,
  type UpdateCustomerRequest,
  UpdateCustomerRequestSchema,
  UpdateCustomerResponseSchema,
} from "../../../../gen/telco/domain/v1/customer_pb.js";
import { LineSchema, LineStatus } from "../../../../gen/telco/domain/v1/subscription_pb.js";
import { mayReveal, type Principal, principalOf } from "../../../kit/src/auth.js";
import { decodePageToken, encodePageToken, ID_RE, notFound, pageSize, Violations } from "../../../kit/src/errors.js";
import { requestFingerprint } from "../idempotency.js";
import { mapPii } from "../pii/data-loss.js";
import {
  formatPhone,
  maskBirthDate,
  maskEmail,
  maskName,
  maskPhone,
  normaliseBirthDate,
  normaliseEmail,
  normaliseName,
  normalisePhone,
} from "../pii/normalise.js";
import type {
  CustomerFields,
  CustomerQuery,
  CustomerRow,
  CustomerStore,
  OpenCustomer,
} from "../store/customer-store.js";

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const REASON_MAX = 500;

// Violation texts describe the expected form; they never repeat what the caller sent.
const WHY = {
  name: "required: 1 to 100 characters",
  phone_number: "must be a Korean mobile number such as 010-1234-5678",
  email: "must be an e-mail address such as name@example.kr",
  birth_date: "must be a date YYYY-MM-DD between 1900-01-01 and today",
} as const;

const LINE_STATUS = {
  active: LineStatus.ACTIVE,
  suspended: LineStatus.SUSPENDED,
  terminated: LineStatus.TERMINATED,
} as const;

function toCustomer(c: OpenCustomer, reveal: boolean): Customer {
  return create(CustomerSchema, {
    customerId: c.customerId,
    name: reveal ? c.name : maskName(c.name),
    phoneNumber: reveal ? formatPhone(c.phone) : maskPhone(c.phone),
    email: c.email === undefined ? "" : reveal ? c.email : maskEmail(c.email),
    birthDate: reveal ? c.birthDate : maskBirthDate(c.birthDate),
    revealed: reveal,
    createdAt: timestampFromDate(c.createdAt),
    updatedAt: timestampFromDate(c.updatedAt),
  });
}

function requestId(v: Violations, id: string): void {
  v.check(ID_RE.test(id), "request_id", "required: 1-64 letters, digits, '.', '_', ':' or '-' (e.g. a UUID)");
}

function customerId(v: Violations, id: string): void {
  v.check(UUID_RE.test(id), "customer_id", "must be a customer id (a UUID)");
}

export class CustomerServiceImpl implements ServiceImpl<typeof CustomerService> {
  constructor(private readonly store: CustomerStore) {}

  async createCustomer(req: CreateCustomerRequest, ctx: HandlerContext) {
    const v = new Violations();
    requestId(v, req.requestId);
    const name = normaliseName(req.name);
    v.check(name !== undefined, "name", WHY.name);
    const phone = normalisePhone(req.phoneNumber);
    v.check(phone !== undefined, "phone_number", WHY.phone_number);
    const email = req.email.trim() === "" ? undefined : normaliseEmail(req.email);
    v.check(req.email.trim() === "" || email !== undefined, "email", WHY.email);
    const birthDate = normaliseBirthDate(req.birthDate);
    v.check(birthDate !== undefined, "birth_date", WHY.birth_date);
    v.throwIfAny();
    const fields = { name, phone, email, birthDate } as CustomerFields;
    const fingerprint = requestFingerprint(CreateCustomerRequestSchema, req, principalOf(ctx).subject);
    const { row } = await this.store.create(req.requestId, fingerprint, fields);
    return create(CreateCustomerResponseSchema, { customer: this.masked(row) });
  }

  async getCustomer(req: GetCustomerRequest, ctx: HandlerContext) {
    const p = principalOf(ctx);
    const v = new Violations();
    customerId(v, req.customerId);
    if (req.reveal && !mayReveal(p)) {
      throw new ConnectError(`role ${p.role} may not reveal personal data`, Code.PermissionDenied);
    }
    if (req.reveal) {
      v.check(
        req.revealReason.trim().length > 0 && req.revealReason.length <= REASON_MAX,
        "reveal_reason",
        `required with reveal: why the data is needed (at most ${REASON_MAX} characters)`,
      );
    }
    v.throwIfAny();
    await this.assertCustomerAccess(p, req.customerId);
    if (!req.reveal) {
      const row = await this.store.get(req.customerId);
      if (!row) throw notFound(`customer ${req.customerId}`);
      return create(GetCustomerResponseSchema, { customer: this.masked(row) });
    }
    const row = await this.store.getAudited(req.customerId, {
      actor: p,
      action: "reveal",
      reason: req.revealReason.trim(),
    });
    if (!row) throw notFound(`customer ${req.customerId}`);
    return create(GetCustomerResponseSchema, {
      customer: toCustomer(
        mapPii(() => this.store.open(row)),
        true,
      ),
    });
  }

  async updateCustomer(req: UpdateCustomerRequest, ctx: HandlerContext) {
    const v = new Violations();
    requestId(v, req.requestId);
    customerId(v, req.customerId);
    const changes: Partial<CustomerFields> = {};
    if (req.name !== undefined) {
      const name = normaliseName(req.name);
      if (v.check(name !== undefined, "name", WHY.name)) changes.name = name;
    }
    if (req.phoneNumber !== undefined) {
      const phone = normalisePhone(req.phoneNumber);
      if (v.check(phone !== undefined, "phone_number", WHY.phone_number)) changes.phone = phone;
    }
    if (req.email !== undefined) {
      // An empty e-mail removes it (it is the one optional personal field).
      const email = req.email.trim() === "" ? undefined : normaliseEmail(req.email);
      if (v.check(req.email.trim() === "" || email !== undefined, "email", WHY.email)) changes.email = email;
    }
    if (req.birthDate !== undefined) {
      const birthDate = normaliseBirthDate(req.birthDate);
      if (v.check(birthDate !== undefined, "birth_date", WHY.birth_date)) changes.birthDate = birthDate;
    }
    v.throwIfAny();
    const fingerprint = requestFingerprint(UpdateCustomerRequestSchema, req, principalOf(ctx).subject);
    const res = await this.store
      .update(req.requestId, fingerprint, req.customerId, changes, (c) =>
        create(UpdateCustomerResponseSchema, { customer: toCustomer(c, false) }),
      )
      .catch((e: unknown) =>
        mapPii(() => {
          throw e;
        }),
      );
    if (!res) throw notFound(`customer ${req.customerId}`);
    return res;
  }

  async searchCustomers(req: SearchCustomersRequest) {
    const v = new Violations();
    const limit = pageSize(req.pageSize, 20, 100, v);
    const after = decodePageToken(req.pageToken, v);
    if (after !== undefined)
      v.check(
        typeof after === "string" && UUID_RE.test(after),
        "page_token",
        "not a token returned by a previous call",
      );
    let query: CustomerQuery | undefined;
    switch (req.query.case) {
      case "phoneNumber": {
        const phone = normalisePhone(req.query.value);
        if (v.check(phone !== undefined, "phone_number", WHY.phone_number)) query = { phone: phone as string };
        break;
      }
      case "email": {
        const email = normaliseEmail(req.query.value);
        if (v.check(email !== undefined, "email", WHY.email)) query = { email: email as string };
        break;
      }
      case "namePrefix": {
        const prefix = req.query.value.trim();
        if (v.check(prefix.length >= 1 && prefix.length <= 100, "name_prefix", "required: 1 to 100 characters"))
          query = { namePrefix: prefix };
        break;
      }
      default:
        v.add("query", "set exactly one of phone_number, email or name_prefix");
    }
    v.throwIfAny();
    const rows = await this.store.search(query as CustomerQuery, limit + 1, after as string | undefined);
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return create(SearchCustomersResponseSchema, {
      customers: page.map((r) => this.masked(r)),
      nextPageToken: rows.length > limit && last ? encodePageToken(last.customer_id) : "",
    });
  }

  async listCustomerLines(req: ListCustomerLinesRequest, ctx: HandlerContext) {
    const p = principalOf(ctx);
    const v = new Violations();
    customerId(v, req.customerId);
    v.throwIfAny();
    await this.assertCustomerAccess(p, req.customerId);
    if (!(await this.store.get(req.customerId))) throw notFound(`customer ${req.customerId}`);
    const rows = await this.store.lines(req.customerId);
    return create(ListCustomerLinesResponseSchema, {
      lines: rows.map((r) =>
        create(LineSchema, {
          subscriptionId: r.subscription_id,
          customerId: r.customer_id,
          phoneNumber: mapPii(() => {
            const n = this.store.openNumber(r.number_sealed);
            return maskPhone(normalisePhone(n) ?? n.replace(/\D/g, ""));
          }),
          status: LINE_STATUS[r.status],
          planId: r.plan_id ?? "",
          quotaBytes: BigInt(r.quota_bytes ?? 0),
          activatedAt: timestampFromDate(r.activated_at),
          terminatedAt: r.terminated_at ? timestampFromDate(r.terminated_at) : undefined,
        }),
      ),
    });
  }

  private masked(row: CustomerRow): Customer {
    return toCustomer(
      mapPii(() => this.store.open(row)),
      false,
    );
  }

  /** Staff and services reach every customer; a subscriber only the customer of one of their lines. */
  private async assertCustomerAccess(p: Principal, id: string): Promise<void> {
    if (p.role !== "subscriber") return;
    if (!(await this.store.ownsAnyLine(id, p.subscriptionIds))) {
      throw new ConnectError(`customer ${id} is not the caller's`, Code.PermissionDenied);
    }
  }
}
