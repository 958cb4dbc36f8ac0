import type { ConnectRouter } from "@connectrpc/connect";
import { UsageService } from "../../../gen/telco/usage/v1/usage_pb.js";
import { EVERYONE, type Policy } from "../../kit/src/auth.js";
import { UsageServiceImpl } from "./handlers/usage-service.js";
import type { LineUsageStore } from "./store/line-usage-store.js";

export interface UsageDeps {
  store: LineUsageStore;
}

export const services = [UsageService];

/** Roles per method; the request gate enforces it before a body is read. */
export const policy: Policy = {
  GetLineUsage: EVERYONE,
  SetLineQuota: ["admin", "operator", "service"],
};

export const routes = (deps: UsageDeps) => (router: ConnectRouter) => {
  router.service(UsageService, new UsageServiceImpl(deps.store));
};
