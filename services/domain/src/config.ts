import { ConfigError, type ConfigOf, defineConfig, loadConfig } from "../../kit/src/config.js";
import { commonSpec, metricsPortSpec } from "../../kit/src/settings.js";
import { parseKeyRing } from "./pii/cipher.js";

export const spec = defineConfig({
  ...commonSpec,
  DOMAIN_PORT: {
    type: "int",
    min: 0,
    max: 65_535,
    default: 50053,
    description: "Port of the domain unit (gRPC, gRPC-Web, Connect).",
  },
  METRICS_PORT: metricsPortSpec(9103),
  AUTH_SIGNING_KEY: {
    type: "string",
    secret: true,
    description: "Ed25519 private key (PKCS#8 PEM, or its base64) that the domain unit signs access tokens with.",
  },
  AUTH_TOKEN_TTL_SECONDS: {
    type: "int",
    min: 60,
    max: 86_400,
    default: 3_600,
    description: "Lifetime of the access tokens Login issues.",
  },
  DOMAIN_PII_KEYS: {
    type: "string",
    secret: true,
    description:
      'Keys that seal personal data, "id:base64,id:base64" (32-byte AES-256 keys). Old ids stay listed until `npm run domain:reencrypt` has moved every row to the active key.',
  },
  DOMAIN_PII_ACTIVE_KEY: { type: "string", description: "Id of the key in DOMAIN_PII_KEYS that seals new values." },
  DOMAIN_BLIND_INDEX_KEY: {
    type: "string",
    secret: true,
    description: "Base64 32-byte HMAC key of the exact-match search indexes (phone, e-mail, line numbers).",
  },
  DOMAIN_NUMBER_RETENTION_DAYS: {
    type: "int",
    min: 0,
    max: 365,
    default: 90,
    description: "How long a terminated line's number is held for its customer before it returns to the pool.",
  },
  DOMAIN_DB_POOL_MAX: {
    type: "int",
    min: 1,
    max: 200,
    default: 10,
    description: "PostgreSQL connections of the domain unit.",
  },
  DOMAIN_EVENTS_TOPIC: {
    type: "string",
    default: "domain.events",
    description: "Topic the line events (activations, plan changes, terminations) are published to.",
  },
  DOMAIN_OUTBOX_POLL_MS: {
    type: "int",
    min: 10,
    max: 60_000,
    default: 200,
    description: "How long the outbox relay waits after finding nothing to publish (the worst-case delay of an event).",
  },
  DOMAIN_OUTBOX_BATCH_SIZE: {
    type: "int",
    min: 1,
    max: 10_000,
    default: 500,
    description: "Outbox rows the relay publishes per round trip.",
  },
});

export type DomainConfig = ConfigOf<typeof spec>;

export function readConfig(env: Record<string, string | undefined> = process.env): DomainConfig {
  const config = loadConfig(spec, env);
  try {
    parseKeyRing(config.DOMAIN_PII_KEYS, config.DOMAIN_PII_ACTIVE_KEY, config.DOMAIN_BLIND_INDEX_KEY);
  } catch (e) {
    throw new ConfigError([
      `DOMAIN_PII_KEYS / DOMAIN_PII_ACTIVE_KEY / DOMAIN_BLIND_INDEX_KEY: ${(e as Error).message}`,
    ]);
  }
  return config;
}
