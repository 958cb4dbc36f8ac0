import { runUnit, serverSettings } from "../../kit/src/bootstrap.js";
import { createKnex } from "../../kit/src/postgres.js";
import { readConfig } from "./config.js";
import { createServer } from "./server.js";
import { JobRepository } from "./store/job-repository.js";

await runUnit({
  unit: "batch",
  readConfig,
  port: (c) => c.BATCH_PORT,
  build: async ({ config, logger, lifecycle }) => {
    const knex = createKnex({ url: config.DATABASE_URL, schema: "billing", poolMax: config.BATCH_DB_POOL_MAX });
    lifecycle.onShutdown("close", "postgres", () => knex.destroy());
    await knex.raw("select 1");
    return createServer({ jobs: new JobRepository(knex) }, serverSettings(config, logger));
  },
});
