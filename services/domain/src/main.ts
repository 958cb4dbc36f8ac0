import { runUnit, serverSettings } from "../../kit/src/bootstrap.js";
import { createKnex } from "../../kit/src/postgres.js";
import { readConfig } from "./config.js";
import { createServer } from "./server.js";
import { CatalogStore } from "./store/catalog-store.js";

await runUnit({
  unit: "domain",
  readConfig,
  port: (c) => c.DOMAIN_PORT,
  build: async ({ config, logger, lifecycle }) => {
    const knex = createKnex({ url: config.DATABASE_URL, schema: "domain", poolMax: config.DOMAIN_DB_POOL_MAX });
    lifecycle.onShutdown("close", "postgres", () => knex.destroy());
    await knex.raw("select 1");
    return createServer({ catalog: new CatalogStore(knex) }, serverSettings(config, logger));
  },
});
