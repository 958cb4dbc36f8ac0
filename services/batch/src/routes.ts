import type { ConnectRouter } from "@connectrpc/connect";
import { BillingJobService } from "../../../gen/telco/batch/v1/billing_pb.js";
import { type Policy, STAFF } from "../../kit/src/auth.js";
import type { BillingJob } from "./billing/job.js";
import { BillingJobServiceImpl } from "./handlers/billing-job-service.js";
import type { JobRepository } from "./store/job-repository.js";

export interface BatchDeps {
  jobs: JobRepository;
  /** Runs the billing jobs this instance is asked to start (BATCH_COMPONENTS jobs). */
  job?: BillingJob;
}

export const services = [BillingJobService];

/** Roles per method; the request gate enforces it before a body is read. */
export const policy: Policy = {
  GetJobExecution: [...STAFF, "service"],
  ListJobExecutions: [...STAFF, "service"],
  WatchJobExecution: [...STAFF, "service"],
  StartBillingJob: ["admin", "operator"],
  StopJobExecution: ["admin", "operator"],
  RestartJobExecution: ["admin", "operator"],
};

export const routes = (deps: BatchDeps) => (router: ConnectRouter) => {
  router.service(BillingJobService, new BillingJobServiceImpl(deps.jobs, deps.job));
};
