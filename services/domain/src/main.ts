import { TokenSigner } from "../../kit/src/auth.js";
import { postgresFor, runUnit, serverSettings } from "../../kit/src/bootstrap.js";
import { ConfigError } from "../../kit/src/config.js";
import { createKafka, createProducer } from "../../kit/src/kafka.js";
import { OutboxRelay } from "../../kit/src/outbox-relay.js";
import { TOPICS } from "../../kit/src/topics.js";
import { readConfig } from "./config.js";
import { PiiCipher, parseKeyRing } from "./pii/cipher.js";
import { policy } from "./routes.js";
import { createServer } from "./server.js";
import { CatalogStore, ExtrasStore } from "./store/catalog-store.js";
import { CustomerStore } from "./store/customer-store.js";
import { InvoiceStore } from "./store/invoice-store.js";
import { LineStore } from "./store/line-store.js";
import { OperatorStore } from "./store/operator-store.js";
import { PaymentStore } from "./store/payment-store.js";

await runUnit({
  unit: "domain",
  readConfig,
  port: (c) => c.DOMAIN_PORT,
  build: async (ctx) => {
    const { config, logger } = ctx;
    const knex = await postgresFor(ctx, "domain", config.DOMAIN_DB_POOL_MAX);
    const pii = new PiiCipher(
      parseKeyRing(config.DOMAIN_PII_KEYS, config.DOMAIN_PII_ACTIVE_KEY, config.DOMAIN_BLIND_INDEX_KEY),
    );
    // The outbox relay publishes what committed changes wrote; it stops taking rows in "drain"
    // (finishing the round in hand) and its producer disconnects in "flush".
    const producer = await createProducer(
      createKafka({ brokers: config.KAFKA_BROKERS, clientId: "domain-outbox", logger }),
    );
    ctx.lifecycle.onShutdown("flush", "kafka-producer", () => producer.disconnect());
    const relay = new OutboxRelay({
      knex,
      table: "domain.outbox",
      producer,
      logger,
      batchSize: config.DOMAIN_OUTBOX_BATCH_SIZE,
      pollIntervalMs: config.DOMAIN_OUTBOX_POLL_MS,
      topics: { [TOPICS.domainEvents]: config.DOMAIN_EVENTS_TOPIC },
    });
    ctx.lifecycle.onShutdown("drain", "outbox-relay", () => relay.stop());
    relay.start();
    return createServer(
      {
        catalog: new CatalogStore(knex),
        extras: new ExtrasStore(knex),
        operators: new OperatorStore(knex),
        signer: await signerFrom(config.AUTH_SIGNING_KEY),
        tokenTtlSeconds: config.AUTH_TOKEN_TTL_SECONDS,
        pii,
        customers: new CustomerStore(knex, pii),
        numberRetentionDays: config.DOMAIN_NUMBER_RETENTION_DAYS,
        payments: new PaymentStore(knex, config.TIME_ZONE),
        invoices: new InvoiceStore(knex),
        lines: new LineStore(knex),
        timeZone: config.TIME_ZONE,
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
