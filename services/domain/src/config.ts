import { type ConfigOf, defineConfig, loadConfig } from "../../kit/src/config.js";
import { commonSpec } from "../../kit/src/settings.js";

export const spec = defineConfig({
  ...commonSpec,
  DOMAIN_PORT: {
    type: "int",
    min: 0,
    max: 65_535,
    default: 50053,
    description: "Port of the domain unit (gRPC, gRPC-Web, Connect).",
  },
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
  DOMAIN_DB_POOL_MAX: {
    type: "int",
    min: 1,
    max: 200,
    default: 10,
    description: "PostgreSQL connections of the domain unit.",
  },
});

export type DomainConfig = ConfigOf<typeof spec>;

export const readConfig = (env: Record<string, string | undefined> = process.env): DomainConfig =>
  loadConfig(spec, env);
