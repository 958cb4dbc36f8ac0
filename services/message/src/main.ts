import { SubscriptionService } from "../../../gen/telco/domain/v1/subscription_pb.js";
import { postgresFor, runUnit, serverSettings } from "../../kit/src/bootstrap.js";
import { ConfigError } from "../../kit/src/config.js";
import { createKafka, createProducer } from "../../kit/src/kafka.js";
import { OutboxRelay } from "../../kit/src/outbox-relay.js";
import { clientReady, createRedisClient } from "../../kit/src/redis.js";
import { ServiceTokens, unitClient } from "../../kit/src/unit-client.js";
import { readConfig } from "./config.js";
import { Dispatcher } from "./delivery/dispatcher.js";
import { Intake } from "./delivery/intake.js";
import { Limits } from "./delivery/limits.js";
import { parseQuietHours, systemClock, ZonedTime } from "./delivery/quiet-hours.js";
import { watchProviders } from "./metrics.js";
import { type Provider, providerModules } from "./providers/provider.js";
import { policy } from "./routes.js";
import { createServer } from "./server.js";
import { MessageStore, OUTBOX_TABLE } from "./store/message-store.js";
import { type ChannelName, TemplateStore } from "./store/template-store.js";

await runUnit({
  unit: "message",
  readConfig,
  port: (c) => c.MESSAGE_PORT,
  build: async (ctx) => {
    const { config, logger, lifecycle } = ctx;
    const has = (c: string) => config.MESSAGE_COMPONENTS.includes(c);
    const knex = await postgresFor(ctx, "message", config.MESSAGE_DB_POOL_MAX);
    const templates = new TemplateStore(knex);
    const messages = new MessageStore(knex, {
      results: config.MESSAGE_RESULTS_TOPIC,
      requests: config.NOTIFICATION_TOPIC,
    });
    const clock = systemClock;
    const zone = new ZonedTime(config.TIME_ZONE);
    const quiet = parseQuietHours(config.MESSAGE_QUIET_HOURS);
    const kafka = createKafka({ brokers: config.KAFKA_BROKERS, clientId: "message", logger });
    let dispatcher: Dispatcher | undefined;

    if (has("intake") || has("relay")) {
      const producer = await createProducer(kafka);
      lifecycle.onShutdown("close", "kafka-producer", () => producer.disconnect());
      if (has("relay")) {
        const relay = new OutboxRelay({ knex, table: OUTBOX_TABLE, producer, logger });
        relay.start();
        lifecycle.onShutdown("drain", "outbox-relay", () => relay.stop());
      }
      if (has("intake")) {
        const intake = new Intake({
          kafka,
          producer,
          store: messages,
          topic: config.NOTIFICATION_TOPIC,
          groupId: config.MESSAGE_GROUP,
          logger,
          clock,
          zone,
          quiet,
          defaultLocale: config.MESSAGE_DEFAULT_LOCALE,
          onAccepted: () => dispatcher?.wake(),
        });
        lifecycle.onShutdown("drain", "intake", () => intake.stop());
        await intake.start();
      }
    }

    if (has("dispatcher")) {
      const redis = createRedisClient(config.REDIS_URL, [], logger, "message");
      lifecycle.onShutdown("close", "redis", async () => {
        await redis.quit();
      });
      await clientReady(redis, "redis");
      const modules = await providerModules();
      const providers = new Map<ChannelName, Provider>();
      for (const [channel, name] of [
        ["sms", config.MESSAGE_PROVIDER_SMS],
        ["email", config.MESSAGE_PROVIDER_EMAIL],
        ["push", config.MESSAGE_PROVIDER_PUSH],
      ] as const) {
        const mod = modules.get(name);
        if (!mod || mod.channel !== channel) {
          const fit = [...modules.values()].filter((m) => m.channel === channel).map((m) => m.name);
          throw new ConfigError([
            `MESSAGE_PROVIDER_${channel.toUpperCase()}: no ${channel} provider "${name}" (have: ${fit.join(", ")})`,
          ]);
        }
        const p = mod.create({
          env: process.env,
          logger,
          onReceipt: (r) => messages.applyReceipt(r.providerId, r.stat, new Date(clock.now())),
        });
        await p.start();
        lifecycle.onShutdown("close", `provider-${p.name}`, () => p.stop());
        providers.set(channel, p);
      }
      watchProviders(providers);
      const tokens = await ServiceTokens.create(config.SERVICE_SIGNING_KEY, "message");
      dispatcher = new Dispatcher({
        store: messages,
        templates,
        limits: new Limits(redis),
        providers,
        domain: unitClient(SubscriptionService, config.DOMAIN_URL, tokens),
        clock,
        zone,
        quiet,
        rates: {
          sms: { perSecond: config.MESSAGE_RATE_SMS, burst: config.MESSAGE_RATE_BURST },
          email: { perSecond: config.MESSAGE_RATE_EMAIL, burst: config.MESSAGE_RATE_BURST },
          push: { perSecond: config.MESSAGE_RATE_PUSH, burst: config.MESSAGE_RATE_BURST },
        },
        dailyCap: config.MESSAGE_DAILY_CAP,
        maxAttempts: config.MESSAGE_MAX_ATTEMPTS,
        retryBaseMs: config.MESSAGE_RETRY_BASE_MS,
        retryMaxMs: config.MESSAGE_RETRY_MAX_MS,
        smsMaxSegments: config.MESSAGE_SMS_MAX_SEGMENTS,
        concurrency: config.MESSAGE_DISPATCH_CONCURRENCY,
        pollMs: config.MESSAGE_DISPATCH_POLL_MS,
        leaseMs: config.MESSAGE_CLAIM_LEASE_MS,
        logger,
      });
      dispatcher.start();
      const d = dispatcher;
      lifecycle.onShutdown("drain", "dispatcher", () => d.stop());
    }

    return createServer(
      {
        templates,
        messages,
        clock,
        timeZone: config.TIME_ZONE,
        quietHours: config.MESSAGE_QUIET_HOURS,
        smsMaxSegments: config.MESSAGE_SMS_MAX_SEGMENTS,
        onAccepted: () => dispatcher?.wake(),
      },
      await serverSettings(config, logger, policy),
    );
  },
});
