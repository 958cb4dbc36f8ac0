import { runUnit, serverSettings } from "../../kit/src/bootstrap.js";
import { createRedis, redisReady } from "../../kit/src/redis.js";
import { readConfig } from "./config.js";
import { policy } from "./routes.js";
import { createServer } from "./server.js";
import { LineUsageStore } from "./store/line-usage-store.js";

await runUnit({
  unit: "usage",
  readConfig,
  port: (c) => c.USAGE_PORT,
  build: async ({ config, logger, lifecycle }) => {
    const redis = createRedis(config.REDIS_URL, logger, "usage");
    lifecycle.onShutdown("close", "redis", () => redis.quit());
    await redisReady(redis, config.REDIS_URL);
    return createServer({ store: new LineUsageStore(redis) }, await serverSettings(config, logger, policy));
  },
});
