import { postgresFor, runUnit, serverSettings } from "../../kit/src/bootstrap.js";
import { readConfig } from "./config.js";
import { createServer } from "./server.js";
import { CatalogStore, ExtrasStore } from "./store/catalog-store.js";

await runUnit({
  unit: "domain",
  readConfig,
  port: (c) => c.DOMAIN_PORT,
  build: async (ctx) => {
    const { config, logger } = ctx;
    const knex = await postgresFor(ctx, "domain", config.DOMAIN_DB_POOL_MAX);
    return createServer(
      { catalog: new CatalogStore(knex), extras: new ExtrasStore(knex) },
      serverSettings(config, logger),
    );
  },
});
