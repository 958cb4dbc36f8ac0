import { readFileSync } from "node:fs";
import type { Spec } from "./config.js";

/** Settings every unit reads the same way; each unit adds its port and its own settings. */
export const commonSpec = {
  LOG_LEVEL: {
    type: "enum",
    values: ["trace", "debug", "info", "warn", "error", "fatal", "silent"],
    default: "info",
    description: "Minimum level of the JSON log lines written to stdout.",
  },
  BIND_HOST: {
    type: "string",
    default: "127.0.0.1",
    description: "Address the RPC port binds to (0.0.0.0 in a cluster).",
  },
  KAFKA_BROKERS: { type: "list", default: ["127.0.0.1:9092"], description: "Comma-separated Kafka bootstrap servers." },
  REDIS_URL: {
    type: "url",
    protocols: ["redis", "rediss"],
    default: "redis://127.0.0.1:6379",
    description: "Redis URL (may carry a password).",
    secret: true,
  },
  DATABASE_URL: {
    type: "url",
    protocols: ["postgres", "postgresql"],
    default: "postgres://postgres@127.0.0.1:5432/telco",
    description: "PostgreSQL URL; each unit works in its own schema of this database.",
    secret: true,
  },
  TIME_ZONE: {
    type: "string",
    default: "Asia/Seoul",
    description: "The carrier's time zone: months and quiet hours are counted in it.",
  },
  AUTH_VERIFY_KEY: {
    type: "string",
    description:
      "Public key (Ed25519 SPKI PEM, or its base64) that access tokens are verified with. `npm start` and `npm test` generate development keys; in a cluster it comes from the telco-auth ConfigMap.",
  },
  TLS_CERT_FILE: {
    type: "string",
    default: "",
    description: "PEM certificate: serve TLS when set (with TLS_KEY_FILE).",
  },
  TLS_KEY_FILE: { type: "string", default: "", description: "PEM private key for TLS_CERT_FILE." },
  DRAIN_DELAY_MS: {
    type: "int",
    min: 0,
    max: 120_000,
    default: 1_000,
    description: "On SIGTERM, keep answering (health NOT_SERVING) this long before refusing new calls.",
  },
  DRAIN_TIMEOUT_MS: {
    type: "int",
    min: 0,
    max: 600_000,
    default: 10_000,
    description: "On SIGTERM, calls in flight get this long to finish before they are cancelled.",
  },
  SHUTDOWN_TIMEOUT_MS: {
    type: "int",
    min: 1_000,
    max: 600_000,
    default: 30_000,
    description: "Hard limit of the whole graceful shutdown; the process exits 1 after it.",
  },
  OTEL_EXPORTER_OTLP_ENDPOINT: {
    type: "string",
    default: "",
    description:
      "Where traces go over OTLP (http://host:4318 for OTLP/HTTP, the cluster's Alloy); empty = tracing off. The SDK's other standard OTEL_* variables apply (OTEL_EXPORTER_OTLP_PROTOCOL http/protobuf | http/json | grpc, OTEL_BSP_*, OTEL_SDK_DISABLED).",
  },
  OTEL_TRACES_SAMPLER: {
    type: "enum",
    values: [
      "always_on",
      "always_off",
      "traceidratio",
      "parentbased_always_on",
      "parentbased_always_off",
      "parentbased_traceidratio",
    ],
    default: "parentbased_always_on",
    description:
      "Which traces are kept: parentbased_* follow the caller's decision (a trace once started is followed through every unit).",
  },
  OTEL_TRACES_SAMPLER_ARG: {
    type: "string",
    default: "",
    pattern: /^$|^(0(\.\d+)?|1(\.0+)?)$/,
    description: "The ratio for the *traceidratio samplers, 0 to 1 (e.g. 0.01).",
  },
} satisfies Record<string, Spec>;

/** The unit's Prometheus port (each unit has its own default: usage 9101 … batch 9104). */
export function metricsPortSpec(port: number) {
  return {
    type: "int",
    min: 0,
    max: 65_535,
    default: port,
    description: `Port of the unit's Prometheus endpoint (/metrics) on BIND_HOST; ${port} by default, 0 = any free port (logged).`,
  } satisfies Spec;
}

/** Rejects a time zone the runtime does not know (a typo would silently count months in UTC). */
export function checkTimeZone(tz: string): string | undefined {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return undefined;
  } catch {
    return `TIME_ZONE must be an IANA time zone such as Asia/Seoul (got ${JSON.stringify(tz)})`;
  }
}

export function readTls(certFile: string, keyFile: string): { cert: Buffer; key: Buffer } | undefined {
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) throw new Error("TLS_CERT_FILE and TLS_KEY_FILE must be set together");
  return { cert: readFileSync(certFile), key: readFileSync(keyFile) };
}
