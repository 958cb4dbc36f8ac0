import type { ConnectRouter } from "@connectrpc/connect";
import { UsageService } from "../../../gen/telco/usage/v1/usage_pb.js";
import { EVERYONE, type Policy, STAFF } from "../../kit/src/auth.js";
import { type UsageServiceDeps, UsageServiceImpl } from "./handlers/usage-service.js";

export type UsageDeps = UsageServiceDeps;

export const services = [UsageService];

/** Roles per method; the request gate enforces it before a body is read. */
export const policy: Policy = {
  GetLineUsage: EVERYONE,
  // An operator's override (customer care); the domain unit's plans reach the unit as events.
  SetLineQuota: ["admin", "operator"],
  GetLineUsageHistory: EVERYONE,
  WatchLineUsage: EVERYONE,
  ListTopLines: STAFF,
  // Billing (the batch unit) reads every line's total of a month.
  StreamMonthTotals: ["service", "admin"],
  CloseMonth: ["service", "admin"],
  StreamLateUsage: ["service", "admin"],
  ReloadQuotas: ["admin", "service"],
};

export const routes = (deps: UsageDeps) => (router: ConnectRouter) => {
  router.service(UsageService, new UsageServiceImpl(deps));
};
