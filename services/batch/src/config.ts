import { type ConfigOf, defineConfig, loadConfig } from "../../kit/src/config.js";
import { commonSpec } from "../../kit/src/settings.js";

export const spec = defineConfig({
  ...commonSpec,
  BATCH_PORT: {
    type: "int",
    min: 0,
    max: 65_535,
    default: 50054,
    description: "Port of the batch unit (gRPC, gRPC-Web, Connect).",
  },
  BATCH_DB_POOL_MAX: {
    type: "int",
    min: 1,
    max: 200,
    default: 10,
    description: "PostgreSQL connections of the batch unit.",
  },
});

export type BatchConfig = ConfigOf<typeof spec>;

export const readConfig = (env: Record<string, string | undefined> = process.env): BatchConfig => loadConfig(spec, env);
