import { type ConfigOf, defineConfig, loadConfig } from "../../kit/src/config.js";
import { commonSpec } from "../../kit/src/settings.js";

export const spec = defineConfig({
  ...commonSpec,
  MESSAGE_PORT: {
    type: "int",
    min: 0,
    max: 65_535,
    default: 50052,
    description: "Port of the message unit (gRPC, gRPC-Web, Connect).",
  },
  MESSAGE_DB_POOL_MAX: {
    type: "int",
    min: 1,
    max: 200,
    default: 10,
    description: "PostgreSQL connections of the message unit.",
  },
});

export type MessageConfig = ConfigOf<typeof spec>;

export const readConfig = (env: Record<string, string | undefined> = process.env): MessageConfig =>
  loadConfig(spec, env);
