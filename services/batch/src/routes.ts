import type { ConnectRouter } from "@connectrpc/connect";
import { BillingJobService } from "../../../gen/telco/batch/v1/billing_pb.js";
import { BillingJobServiceImpl } from "./handlers/billing-job-service.js";
import type { JobRepository } from "./store/job-repository.js";

export interface BatchDeps {
  jobs: JobRepository;
}

export const services = [BillingJobService];

export const routes = (deps: BatchDeps) => (router: ConnectRouter) => {
  router.service(BillingJobService, new BillingJobServiceImpl(deps.jobs));
};
