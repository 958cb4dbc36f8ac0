import { postgresFor, runUnit, serverSettings } from "../../kit/src/bootstrap.js";
import type { BillingJob } from "./billing/job.js";
import { createBillingJob } from "./billing/wiring.js";
import { readConfig } from "./config.js";
import { watchBilling } from "./metrics.js";
import { policy } from "./routes.js";
import { createServer } from "./server.js";
import { JobRepository } from "./store/job-repository.js";

await runUnit({
  unit: "batch",
  readConfig,
  port: (c) => c.BATCH_PORT,
  build: async (ctx) => {
    const { config, logger, lifecycle } = ctx;
    const knex = await postgresFor(ctx, "billing", config.BATCH_DB_POOL_MAX);
    let job: BillingJob | undefined;
    if (config.BATCH_COMPONENTS.includes("jobs")) {
      const billing = await createBillingJob(config, logger);
      job = billing.job;
      const running = billing.job;
      // A running execution is asked to stop at its next chunk and ends STOPPED (restartable);
      // one still running when the process is killed is found by its silent heartbeat.
      lifecycle.onShutdown("drain", "billing-jobs", async () => {
        const inFlight = [...running.inFlight()];
        await Promise.all(inFlight.map(([id]) => running.stop(id).catch(() => {})));
        await Promise.all(inFlight.map(([, done]) => done));
      });
      lifecycle.onShutdown("close", "billing-job", () => billing.close());
    }
    watchBilling(
      (sql) => knex.raw(sql),
      () => (job ? [...job.inFlight()].length : 0),
    );
    return createServer({ jobs: new JobRepository(knex), job }, await serverSettings(config, logger, policy));
  },
});
