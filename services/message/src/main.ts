import { postgresFor, runUnit, serverSettings } from "../../kit/src/bootstrap.js";
import { readConfig } from "./config.js";
import { policy } from "./routes.js";
import { createServer } from "./server.js";
import { TemplateStore } from "./store/template-store.js";

await runUnit({
  unit: "message",
  readConfig,
  port: (c) => c.MESSAGE_PORT,
  build: async (ctx) => {
    const { config, logger } = ctx;
    const knex = await postgresFor(ctx, "message", config.MESSAGE_DB_POOL_MAX);
    return createServer({ templates: new TemplateStore(knex) }, await serverSettings(config, logger, policy));
  },
});
