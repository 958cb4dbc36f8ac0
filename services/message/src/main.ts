import { runUnit, serverSettings } from "../../kit/src/bootstrap.js";
import { createKnex } from "../../kit/src/postgres.js";
import { readConfig } from "./config.js";
import { createServer } from "./server.js";
import { TemplateStore } from "./store/template-store.js";

await runUnit({
  unit: "message",
  readConfig,
  port: (c) => c.MESSAGE_PORT,
  build: async ({ config, logger, lifecycle }) => {
    const knex = createKnex({ url: config.DATABASE_URL, schema: "message", poolMax: config.MESSAGE_DB_POOL_MAX });
    lifecycle.onShutdown("close", "postgres", () => knex.destroy());
    await knex.raw("select 1");
    return createServer({ templates: new TemplateStore(knex) }, serverSettings(config, logger));
  },
});
