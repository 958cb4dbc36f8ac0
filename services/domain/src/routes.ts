import type { ConnectRouter } from "@connectrpc/connect";
import { AuthService } from "../../../gen/telco/domain/v1/auth_pb.js";
import { CatalogService } from "../../../gen/telco/domain/v1/catalog_pb.js";
import { CustomerService } from "../../../gen/telco/domain/v1/customer_pb.js";
import { InvoiceService } from "../../../gen/telco/domain/v1/invoice_pb.js";
import { MicroPaymentService } from "../../../gen/telco/domain/v1/micropayment_pb.js";
import { SubscriptionService } from "../../../gen/telco/domain/v1/subscription_pb.js";
import { EVERYONE, type Policy, STAFF, type TokenSigner, WRITERS } from "../../kit/src/auth.js";
import { AuthServiceImpl } from "./handlers/auth-service.js";
import { CatalogServiceImpl } from "./handlers/catalog-service.js";
import { CustomerServiceImpl } from "./handlers/customer-service.js";
import { InvoiceServiceImpl } from "./handlers/invoice-service.js";
import { MicroPaymentServiceImpl } from "./handlers/micropayment-service.js";
import { SubscriptionServiceImpl } from "./handlers/subscription-service.js";
import type { PiiCipher } from "./pii/cipher.js";
import type { CatalogStore, ExtrasStore } from "./store/catalog-store.js";
import type { CustomerStore } from "./store/customer-store.js";
import type { InvoiceStore } from "./store/invoice-store.js";
import type { LineStore } from "./store/line-store.js";
import type { OperatorStore } from "./store/operator-store.js";
import type { PaymentStore } from "./store/payment-store.js";

export interface DomainDeps {
  catalog: CatalogStore;
  extras: ExtrasStore;
  operators: OperatorStore;
  signer: TokenSigner;
  tokenTtlSeconds: number;
  /** Seals and opens personal data (customers, line numbers). */
  pii: PiiCipher;
  /** Customers, their personal data sealed by `pii`. */
  customers: CustomerStore;
  /** Days a terminated line's number stays held for its customer. */
  numberRetentionDays: number;
  /** Lines, their history and the number pool; changes go through the outbox. */
  lines: LineStore;
  /** The carrier's time zone (TIME_ZONE): a NEXT_MONTH plan change starts at 00:00 there. */
  timeZone: string;
  /** Micro-payments; months counted in the carrier's time zone. */
  payments: PaymentStore;
  /** The invoices the batch unit writes (read only). */
  invoices: InvoiceStore;
}

export const services = [
  CatalogService,
  AuthService,
  CustomerService,
  MicroPaymentService,
  InvoiceService,
  SubscriptionService,
];

/** Roles per method; the request gate enforces it before a body is read. */
export const policy: Policy = {
  ListPlans: EVERYONE,
  GetPlan: EVERYONE,
  ListVas: EVERYONE,
  ListDiscounts: EVERYONE,
  // Login is open (it is how a caller gets a token); listed for completeness of the policy.
  Login: EVERYONE,
  CreateCustomer: WRITERS,
  UpdateCustomer: WRITERS,
  // Services read recipients (the message unit); a subscriber only their own customer (checked in the handler).
  GetCustomer: [...STAFF, "service", "subscriber"],
  SearchCustomers: [...STAFF, "service"],
  ListCustomerLines: [...STAFF, "service", "subscriber"],
  // Payment gateways (services) and customer care record payments; subscribers read their own lines' (handler).
  RecordPayment: [...WRITERS, "service"],
  ListPayments: EVERYONE,
  GetInvoice: EVERYONE,
  ListInvoices: EVERYONE,
  ActivateLine: WRITERS,
  // A subscriber their own line only, from next month (checked in the handler).
  ChangePlan: [...WRITERS, "subscriber"],
  SuspendLine: WRITERS,
  ResumeLine: WRITERS,
  TerminateLine: WRITERS,
  SubscribeVas: WRITERS,
  CancelVas: WRITERS,
  GrantDiscount: WRITERS,
  WithdrawDiscount: WRITERS,
  // A subscriber reads only their own lines (checked in the handler).
  GetLine: [...STAFF, "service", "subscriber"],
  GetLineHistory: [...STAFF, "service", "subscriber"],
  ListLines: [...STAFF, "service"],
  // The usage unit's start-up load of every quota.
  ListLineQuotas: ["service", "admin"],
  // The message unit's sends: a line's contact in clear, to service tokens only (not even admin).
  GetLineContact: ["service"],
};

export const routes = (deps: DomainDeps) => (router: ConnectRouter) => {
  router.service(CatalogService, new CatalogServiceImpl(deps.catalog, deps.extras));
  router.service(AuthService, new AuthServiceImpl(deps.operators.accounts(), deps.signer, deps.tokenTtlSeconds));
  router.service(CustomerService, new CustomerServiceImpl(deps.customers));
  router.service(MicroPaymentService, new MicroPaymentServiceImpl(deps.payments));
  router.service(InvoiceService, new InvoiceServiceImpl(deps.invoices));
  router.service(
    SubscriptionService,
    new SubscriptionServiceImpl(
      deps.lines,
      deps.pii,
      {
        numberRetentionDays: deps.numberRetentionDays,
        timeZone: deps.timeZone,
      },
      deps.customers,
    ),
  );
};
