import { TokenSigner } from "../../kit/src/auth.js";
import { postgresFor, runUnit, serverSettings } from "../../kit/src/bootstrap.js";
import { ConfigError } from "../../kit/src/config.js";
import { readConfig } from "./config.js";
import { policy } from "./routes.js";
import { createServer } from "./server.js";
import { CatalogStore, ExtrasStore } from "./store/catalog-store.js";
import { OperatorStore } from "./store/operator-store.js";

await runUnit({
  unit: "domain",
  readConfig,
  port: (c) => c.DOMAIN_PORT,
  build: async (ctx) => {
    const { config, logger } = ctx;
    const knex = await postgresFor(ctx, "domain", config.DOMAIN_DB_POOL_MAX);
    return createServer(
      {
        catalog: new CatalogStore(knex),
        extras: new ExtrasStore(knex),
        operators: new OperatorStore(knex),
        signer: await signerFrom(config.AUTH_SIGNING_KEY),
        tokenTtlSeconds: config.AUTH_TOKEN_TTL_SECONDS,
      },
      await serverSettings(config, logger, policy),
    );
  },
});

async function signerFrom(key: string): Promise<TokenSigner> {
  try {
    return await TokenSigner.fromPrivateKey(key);
  } catch (e) {
    throw new ConfigError([`AUTH_SIGNING_KEY is not usable: ${(e as Error).message}`]);
  }
}
