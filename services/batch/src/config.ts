import { availableParallelism } from "node:os";
import { ConfigError, type ConfigOf, defineConfig, loadConfig } from "../../kit/src/config.js";
import { commonSpec, metricsPortSpec } from "../../kit/src/settings.js";

export const spec = defineConfig({
  ...commonSpec,
  BATCH_PORT: {
    type: "int",
    min: 0,
    max: 65_535,
    default: 50054,
    description: "Port of the batch unit (gRPC, gRPC-Web, Connect).",
  },
  METRICS_PORT: metricsPortSpec(9104),
  BATCH_DB_POOL_MAX: {
    type: "int",
    min: 1,
    max: 200,
    default: 10,
    description: "PostgreSQL connections of the batch unit (at least BATCH_PARTITIONS + 2 while a job runs).",
  },
  BATCH_COMPONENTS: {
    type: "list",
    default: ["jobs"],
    description:
      "What this instance does besides answering reads: jobs (runs the billing jobs it is asked to start), or none.",
  },
  BATCH_PARTITIONS: {
    type: "int",
    min: 1,
    max: 64,
    default: availableParallelism(),
    description:
      "Partitions a new billing job splits the month's lines into, billed in parallel (default: one per core).",
  },
  BATCH_CHUNK_SIZE: {
    type: "int",
    min: 1,
    max: 20_000,
    default: 1000,
    description: "Lines per chunk: one transaction writes a chunk's invoices with its step's context.",
  },
  BATCH_LEASE_MS: {
    type: "int",
    min: 1000,
    max: 3_600_000,
    default: 30_000,
    description: "A running execution whose process has not written a heartbeat for this long is taken for dead.",
  },
  BATCH_HEARTBEAT_MS: {
    type: "int",
    min: 100,
    max: 600_000,
    default: 5_000,
    description: "How often a running execution writes its heartbeat (well below BATCH_LEASE_MS).",
  },
  BILLING_DUE_DAY: {
    type: "int",
    min: 1,
    max: 28,
    default: 25,
    description: "Day of the month after the billed one an invoice is due.",
  },
  NOTIFICATION_TOPIC: {
    type: "string",
    default: "notification.requests",
    description: "Topic of the invoice-issued notification requests.",
  },
  USAGE_URL: {
    type: "url",
    protocols: ["http", "https"],
    default: "http://127.0.0.1:50051",
    description: "The usage unit (month totals are read from its UsageService.StreamMonthTotals; CloseMonth).",
  },
  SERVICE_SIGNING_KEY: {
    type: "string",
    default: "",
    secret: true,
    description: "Ed25519 private key this unit signs its service tokens for the usage unit with. Needed to run jobs.",
  },
});

export type BatchConfig = ConfigOf<typeof spec>;

export function readConfig(env: Record<string, string | undefined> = process.env): BatchConfig {
  const config = loadConfig(spec, env);
  const problems: string[] = [];
  const jobs = config.BATCH_COMPONENTS.includes("jobs");
  for (const c of config.BATCH_COMPONENTS) {
    if (!["jobs", "none"].includes(c))
      problems.push(`BATCH_COMPONENTS: unknown component ${JSON.stringify(c)} (jobs, none)`);
  }
  if (jobs && config.SERVICE_SIGNING_KEY === "") {
    problems.push(
      "SERVICE_SIGNING_KEY is required when BATCH_COMPONENTS includes jobs (to read the usage unit's totals)",
    );
  }
  if (jobs && config.BATCH_DB_POOL_MAX < config.BATCH_PARTITIONS + 2) {
    problems.push(
      `BATCH_DB_POOL_MAX (${config.BATCH_DB_POOL_MAX}) must be at least BATCH_PARTITIONS + 2 (${config.BATCH_PARTITIONS + 2})`,
    );
  }
  if (config.BATCH_HEARTBEAT_MS * 2 > config.BATCH_LEASE_MS) {
    problems.push("BATCH_HEARTBEAT_MS must be at most half of BATCH_LEASE_MS");
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
