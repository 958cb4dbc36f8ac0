import { ConfigError, type ConfigOf, defineConfig, loadConfig } from "../../kit/src/config.js";
import { checkTimeZone, commonSpec, metricsPortSpec } from "../../kit/src/settings.js";

/** The parts of the usage unit one process can run; a deployment may split them over processes. */
export const COMPONENTS = ["aggregator", "relay", "quotas", "timeseries"] as const;

export const spec = defineConfig({
  ...commonSpec,
  USAGE_PORT: {
    type: "int",
    min: 0,
    max: 65_535,
    default: 50051,
    description: "Port of the usage unit (gRPC, gRPC-Web, Connect).",
  },
  METRICS_PORT: metricsPortSpec(9101),
  USAGE_COMPONENTS: {
    type: "list",
    default: [...COMPONENTS],
    description:
      "What this process runs besides the RPCs: aggregator (counts usage.events), relay (publishes alerts), quotas (consumes domain.events, loads quotas), timeseries (writes InfluxDB); `none` = RPCs only.",
  },
  REDIS_CLUSTER_NODES: {
    type: "list",
    default: [],
    description:
      "Redis Cluster nodes (host:port, comma-separated) for the usage counters; empty = the single Redis of REDIS_URL (whose password is used either way).",
  },
  USAGE_REDIS_BUCKETS: {
    type: "int",
    min: 1,
    max: 16_777_216,
    default: 8_192,
    description:
      "Buckets lines are hashed into (one Redis hash per bucket and month); keep lines/buckets near 100-250 and well under Redis's hash-max-listpack-entries (512 by default). Fixed once counters exist.",
  },
  USAGE_REDIS_GROUPS: {
    type: "int",
    min: 1,
    max: 16_384,
    default: 256,
    description:
      "Line groups (Redis Cluster hash tags, spread over the cluster's slots); one counting script call covers one group. Fixed once counters exist.",
  },
  USAGE_MONTH_GRACE_DAYS: {
    type: "int",
    min: 1,
    max: 365,
    default: 15,
    description:
      "A month's counters expire this many days after billing closed it (CloseMonth); its events are counted until then, those after the close also as late usage for the next invoice.",
  },
  USAGE_MONTH_OPEN_MAX_DAYS: {
    type: "int",
    min: 1,
    max: 365,
    default: 45,
    description:
      "A month that billing has not closed keeps its counters this many days after it ends (then they expire on their own all the same).",
  },
  USAGE_MAX_CLOCK_SKEW_SECONDS: {
    type: "int",
    min: 0,
    max: 86_400,
    default: 300,
    description: "Usage dated further in the future than this is dead-lettered.",
  },
  USAGE_EVENTS_TOPIC: { type: "string", default: "usage.events", description: "Topic of the usage events." },
  DOMAIN_EVENTS_TOPIC: {
    type: "string",
    default: "domain.events",
    description: "Topic of the domain unit's line events (quotas).",
  },
  NOTIFICATION_TOPIC: {
    type: "string",
    default: "notification.requests",
    description: "Topic the usage alerts are published to.",
  },
  USAGE_GROUP_PREFIX: {
    type: "string",
    pattern: /^[A-Za-z0-9._-]{1,100}$/,
    default: "usage",
    description: "Consumer groups are <prefix>-aggregator, <prefix>-quotas and <prefix>-timeseries.",
  },
  USAGE_CONSUMER_CONCURRENCY: {
    type: "int",
    min: 1,
    max: 64,
    default: 4,
    description: "Partitions of usage.events one aggregator process works on at the same time.",
  },
  USAGE_BATCHES_IN_FLIGHT: {
    type: "int",
    min: 1,
    max: 8,
    default: 2,
    description:
      "Fetched batches of one partition the aggregator works on at once: with 2, the next is read and prepared while Redis counts the last (offsets are still committed in order).",
  },
  USAGE_KAFKA_SESSION_TIMEOUT_MS: {
    type: "int",
    min: 6_000,
    max: 300_000,
    default: 30_000,
    description:
      "Consumer group session timeout: how long the partitions of a member that died stay unread before the group moves them.",
  },
  USAGE_RELAY_SWEEP_MS: {
    type: "int",
    min: 50,
    max: 600_000,
    default: 1_000,
    description:
      "How often the relay checks every outbox (alerts are published at once when counted; the sweep picks up what a crash left).",
  },
  USAGE_STATS_INTERVAL_MS: {
    type: "int",
    min: 0,
    max: 3_600_000,
    default: 60_000,
    description:
      "How often the aggregator and relay log their running counts (records, events counted, duplicates, replayed, dead-lettered, alerts, published); 0 = never.",
  },
  USAGE_QUOTA_LOAD: {
    type: "enum",
    values: ["auto", "always", "never"],
    default: "auto",
    description:
      "Load all quotas from the domain unit at start: auto = when Redis has no full load on record, always, or never (ReloadQuotas still can).",
  },
  DOMAIN_URL: {
    type: "url",
    protocols: ["http", "https"],
    default: "http://127.0.0.1:50053",
    description: "The domain unit (quotas are read from its SubscriptionService).",
  },
  SERVICE_SIGNING_KEY: {
    type: "string",
    default: "",
    secret: true,
    description:
      "Ed25519 private key (PKCS#8 PEM or its base64) this unit signs its short-lived service tokens with; its public key must be the callee's AUTH_VERIFY_KEY. Needed by the quotas component.",
  },
  INFLUX_URL: {
    type: "url",
    protocols: ["http", "https"],
    default: "http://127.0.0.1:8086",
    description: "InfluxDB 1.x (usage time series).",
  },
  INFLUX_DB: {
    type: "string",
    pattern: /^[A-Za-z0-9_]{1,64}$/,
    default: "telco",
    description: "InfluxDB database of the usage time series (created if missing).",
  },
  USAGE_TIMESERIES_FLUSH_MS: {
    type: "int",
    min: 100,
    max: 600_000,
    default: 60_000,
    description:
      "How often the time series writer writes the points that changed (usage history lags by at most this).",
  },
});

export type UsageConfig = ConfigOf<typeof spec>;

export function readConfig(env: Record<string, string | undefined> = process.env): UsageConfig {
  const config = loadConfig(spec, env);
  const problems: string[] = [];
  const tz = checkTimeZone(config.TIME_ZONE);
  if (tz) problems.push(tz);
  if (config.USAGE_COMPONENTS.length === 1 && config.USAGE_COMPONENTS[0] === "none") config.USAGE_COMPONENTS = [];
  const unknown = config.USAGE_COMPONENTS.filter((c) => !(COMPONENTS as readonly string[]).includes(c));
  if (unknown.length > 0) {
    problems.push(`USAGE_COMPONENTS must list only ${COMPONENTS.join(", ")} (got ${unknown.join(", ")})`);
  }
  if (config.USAGE_COMPONENTS.includes("quotas") && config.SERVICE_SIGNING_KEY === "") {
    problems.push("SERVICE_SIGNING_KEY is required when USAGE_COMPONENTS includes quotas (to call the domain unit)");
  }
  for (const n of config.REDIS_CLUSTER_NODES) {
    if (!/^[^:\s]+:\d{1,5}$/.test(n))
      problems.push(`REDIS_CLUSTER_NODES entries must be host:port (got ${JSON.stringify(n)})`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
