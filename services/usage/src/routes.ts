import type { ConnectRouter } from "@connectrpc/connect";
import { UsageService } from "../../../gen/telco/usage/v1/usage_pb.js";
import { UsageServiceImpl } from "./handlers/usage-service.js";
import type { LineUsageStore } from "./store/line-usage-store.js";

export interface UsageDeps {
  store: LineUsageStore;
}

export const services = [UsageService];

export const routes = (deps: UsageDeps) => (router: ConnectRouter) => {
  router.service(UsageService, new UsageServiceImpl(deps.store));
};
