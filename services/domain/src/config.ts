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
