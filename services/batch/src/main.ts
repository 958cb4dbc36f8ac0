import { postgresFor, runUnit, serverSettings } from "../../kit/src/bootstrap.js";
import { readConfig } from "./config.js";
import { policy } from "./routes.js";
import { createServer } from "./server.js";
import { JobRepository } from "./store/job-repository.js";

await runUnit({
  unit: "batch",
  readConfig,
  port: (c) => c.BATCH_PORT,
  build: async (ctx) => {
    const { config, logger } = ctx;
    const knex = await postgresFor(ctx, "billing", config.BATCH_DB_POOL_MAX);
    return createServer({ jobs: new JobRepository(knex) }, await serverSettings(config, logger, policy));
  },
});
