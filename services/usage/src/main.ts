import { SubscriptionService } from "../../../gen/telco/domain/v1/subscription_pb.js";
import { runUnit, serverSettings } from "../../kit/src/bootstrap.js";
import { ConfigError, redactUrl } from "../../kit/src/config.js";
import { createKafka, createProducer } from "../../kit/src/kafka.js";
import { clientReady, createRedisClient } from "../../kit/src/redis.js";
import { ServiceTokens, unitClient } from "../../kit/src/unit-client.js";
import { EventChecker } from "./aggregator.js";
import { readConfig } from "./config.js";
import { MonthClock } from "./months.js";
import { UsagePipeline } from "./pipeline.js";
import { loadQuotas, QUOTAS_LOADED_KEY } from "./quotas.js";
import { Layout, LayoutMismatch, UsageStore } from "./redis/store.js";
import { policy } from "./routes.js";
import { createServer } from "./server.js";
import { UsageHistory } from "./timeseries/history.js";
import { InfluxClient } from "./timeseries/influx.js";
import { TimeSeriesWriter } from "./timeseries/writer.js";

await runUnit({
  unit: "usage",
  readConfig,
  port: (c) => c.USAGE_PORT,
  build: async ({ config, logger, lifecycle }) => {
    const has = (c: string) => config.USAGE_COMPONENTS.includes(c);
    const redis = createRedisClient(config.REDIS_URL, config.REDIS_CLUSTER_NODES, logger, "usage");
    lifecycle.onShutdown("close", "redis", async () => {
      await redis.quit();
    });
    const where =
      config.REDIS_CLUSTER_NODES.length > 0 ? config.REDIS_CLUSTER_NODES.join(",") : redactUrl(config.REDIS_URL);
    await clientReady(redis, where);
    const layout = new Layout(config.USAGE_REDIS_BUCKETS, config.USAGE_REDIS_GROUPS);
    try {
      await layout.claim(redis);
    } catch (e) {
      if (e instanceof LayoutMismatch) throw new ConfigError([e.message]);
      throw e;
    }
    const store = new UsageStore(redis, {
      layout,
      clock: new MonthClock(config.TIME_ZONE),
      graceMs: config.USAGE_MONTH_GRACE_DAYS * 86_400_000,
      openMaxMs: config.USAGE_MONTH_OPEN_MAX_DAYS * 86_400_000,
    });
    const influx = new InfluxClient({ url: config.INFLUX_URL, db: config.INFLUX_DB, logger });
    const kafka = createKafka({ brokers: config.KAFKA_BROKERS, clientId: "usage", logger });

    let reloadQuotas: (() => Promise<number>) | undefined;
    if (has("aggregator") || has("relay") || has("quotas")) {
      const producer = await createProducer(kafka);
      lifecycle.onShutdown("close", "kafka-producer", () => producer.disconnect());
      const pipeline = new UsagePipeline({
        kafka,
        producer,
        redis,
        store,
        logger,
        components: { aggregator: has("aggregator"), relay: has("relay"), quotas: has("quotas") },
        topics: {
          usageEvents: config.USAGE_EVENTS_TOPIC,
          domainEvents: config.DOMAIN_EVENTS_TOPIC,
          notifications: config.NOTIFICATION_TOPIC,
        },
        groupPrefix: config.USAGE_GROUP_PREFIX,
        maxClockSkewMs: config.USAGE_MAX_CLOCK_SKEW_SECONDS * 1000,
        relaySweepMs: config.USAGE_RELAY_SWEEP_MS,
        concurrency: config.USAGE_CONSUMER_CONCURRENCY,
        batchesInFlight: config.USAGE_BATCHES_IN_FLIGHT,
        sessionTimeoutMs: config.USAGE_KAFKA_SESSION_TIMEOUT_MS,
        statsIntervalMs: config.USAGE_STATS_INTERVAL_MS,
      });
      // SIGTERM: consumers finish and commit their batch, then the relay publishes what is left.
      lifecycle.onShutdown("drain", "usage-pipeline", () => pipeline.stop());
      await pipeline.start();

      if (has("quotas")) {
        const tokens = await ServiceTokens.create(config.SERVICE_SIGNING_KEY, "usage");
        const domain = unitClient(SubscriptionService, config.DOMAIN_URL, tokens);
        const stop = new AbortController();
        lifecycle.onShutdown("drain", "quota-load", async () => stop.abort());
        // One full load at a time: a ReloadQuotas during one waits for it.
        let loading: Promise<number> | undefined;
        const load = () => {
          loading ??= loadQuotas({ domain, store, redis, logger, onAlerts: pipeline.onAlerts, signal: stop.signal });
          const current = loading;
          void current
            .finally(() => {
              if (loading === current) loading = undefined;
            })
            .catch(() => {});
          return current;
        };
        reloadQuotas = load;
        const wanted =
          config.USAGE_QUOTA_LOAD === "always" ||
          (config.USAGE_QUOTA_LOAD === "auto" && (await redis.get(QUOTAS_LOADED_KEY)) === null);
        if (wanted) {
          // In the background: RPCs and counting do not wait for it (unknown quotas are counted
          // and evaluated when they arrive). Retried while the domain unit is not reachable.
          void (async () => {
            for (let attempt = 1; !stop.signal.aborted; attempt++) {
              try {
                await load();
                return;
              } catch (e) {
                if (stop.signal.aborted) return;
                logger.warn(
                  { err: (e as Error).message, attempt },
                  "loading quotas from the domain unit failed; retrying in 5 s",
                );
                await new Promise((r) => setTimeout(r, 5_000));
              }
            }
          })();
        }
      }
    }

    if (has("timeseries")) {
      await influx.ensureDatabase();
      const writer = new TimeSeriesWriter({
        kafka,
        influx,
        logger,
        topic: config.USAGE_EVENTS_TOPIC,
        groupId: `${config.USAGE_GROUP_PREFIX}-timeseries`,
        checker: new EventChecker(store, config.USAGE_MAX_CLOCK_SKEW_SECONDS * 1000),
        flushMs: config.USAGE_TIMESERIES_FLUSH_MS,
      });
      lifecycle.onShutdown("drain", "usage-timeseries", () => writer.stop());
      await writer.start();
    }

    return createServer(
      { store, history: new UsageHistory(influx), reloadQuotas },
      await serverSettings(config, logger, policy),
    );
  },
});
