import { ConfigError, type ConfigOf, defineConfig, loadConfig } from "../../kit/src/config.js";
import { checkTimeZone, commonSpec } from "../../kit/src/settings.js";

export const spec = defineConfig({
  ...commonSpec,
  USAGE_PORT: {
    type: "int",
    min: 0,
    max: 65_535,
    default: 50051,
    description: "Port of the usage unit (gRPC, gRPC-Web, Connect).",
  },
});

export type UsageConfig = ConfigOf<typeof spec>;

export function readConfig(env: Record<string, string | undefined> = process.env): UsageConfig {
  const config = loadConfig(spec, env);
  const tz = checkTimeZone(config.TIME_ZONE);
  if (tz) throw new ConfigError([tz]);
  return config;
}
