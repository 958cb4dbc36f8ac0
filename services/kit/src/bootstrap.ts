import { type Policy, TokenVerifier } from "./auth.js";
import type { ConfigOf } from "./config.js";
import { ConfigError, configOrExit, redactUrl } from "./config.js";
import { Lifecycle } from "./lifecycle.js";
import { createLogger, type Logger } from "./logger.js";
import { initMetrics, startMetricsServer } from "./metrics.js";
import { createKnex, type Knex } from "./postgres.js";
import type { RpcServer } from "./server.js";
import { type commonSpec, readTls } from "./settings.js";
import { startTelemetry } from "./telemetry.js";

export type CommonConfig = ConfigOf<typeof commonSpec>;

export interface UnitContext<C> {
  config: C;
  logger: Logger;
  lifecycle: Lifecycle;
}

/**
 * The one way every unit's main.ts starts: config (fail fast, exit 78), JSON logger, signal
 * handlers, tracing (when an OTLP endpoint is set) and the Prometheus endpoint, the unit's dependencies (which
 * register their own shutdown steps), then listen. SIGTERM drains RPCs and stops consumers
 * (committing their offsets) before datastores close.
 */
export async function runUnit<C extends CommonConfig & { METRICS_PORT: number }>(o: {
  unit: string;
  readConfig: () => C;
  port: (config: C) => number;
  build: (ctx: UnitContext<C>) => Promise<RpcServer>;
}): Promise<void> {
  const config = configOrExit(o.unit, o.readConfig);
  const logger = createLogger({ unit: o.unit, level: config.LOG_LEVEL });
  const lifecycle = new Lifecycle(logger, config.SHUTDOWN_TIMEOUT_MS);
  lifecycle.installSignalHandlers();
  process.on("unhandledRejection", (err) => {
    logger.fatal({ err }, "unhandled rejection");
    void lifecycle.shutdown("unhandledRejection").finally(() => process.exit(1));
  });
  try {
    const telemetry = await startTelemetry(o.unit);
    // Registered first, so it runs with the datastores' close, after everything that makes spans.
    lifecycle.onShutdown("close", "telemetry", () => telemetry.shutdown());
    initMetrics(o.unit);
    const metrics = await startMetricsServer(config.METRICS_PORT, config.BIND_HOST).catch((e: Error) => {
      throw new Error(`metrics port ${config.BIND_HOST}:${config.METRICS_PORT} (METRICS_PORT): ${e.message}`);
    });
    lifecycle.onShutdown("close", "metrics", () => metrics.close());
    logger.info({ url: metrics.url, tracing: telemetry.enabled }, "metrics listening");
    const server = await o.build({ config, logger, lifecycle });
    const where = await server.listen(o.port(config), config.BIND_HOST);
    lifecycle.onShutdown("drain", "rpc", () => server.drain());
    logger.info({ url: where.url, services: server.index.serviceNames }, `${o.unit} unit listening`);
  } catch (err) {
    await lifecycle.shutdown("startup failure");
    if (err instanceof ConfigError) {
      process.stderr.write(`${o.unit}: ${err.message}\n`);
      process.exit(78);
    }
    logger.fatal({ err }, `${o.unit} unit failed to start`);
    process.exit(1);
  }
}

/** Server settings from the common configuration. */
export async function serverSettings(config: CommonConfig, logger: Logger, policy: Policy) {
  let verifier: TokenVerifier;
  try {
    verifier = await TokenVerifier.fromPublicKey(config.AUTH_VERIFY_KEY);
  } catch (e) {
    throw new ConfigError([`AUTH_VERIFY_KEY is not usable: ${(e as Error).message}`]);
  }
  return {
    logger,
    auth: { verifier, policy },
    tls: readTls(config.TLS_CERT_FILE, config.TLS_KEY_FILE),
    drainDelayMs: config.DRAIN_DELAY_MS,
    drainTimeoutMs: config.DRAIN_TIMEOUT_MS,
  };
}

/**
 * Starts a consumer as part of the unit: on SIGTERM it finishes the batch in hand, commits its
 * offsets and leaves the group during the "drain" phase, before producers and datastores close.
 */
export async function startConsumer(
  lifecycle: Lifecycle,
  consumer: { start(): Promise<void>; stop(): Promise<void> },
  name: string,
): Promise<void> {
  lifecycle.onShutdown("drain", `consumer:${name}`, () => consumer.stop());
  await consumer.start();
}

/** The unit's PostgreSQL pool on its own schema, closed last on shutdown; fails fast when unreachable. */
export async function postgresFor(
  { config, lifecycle }: UnitContext<CommonConfig>,
  schema: string,
  poolMax: number,
): Promise<Knex> {
  const knex = createKnex({ url: config.DATABASE_URL, schema, poolMax });
  lifecycle.onShutdown("close", "postgres", () => knex.destroy());
  try {
    await knex.raw("select 1");
  } catch (e) {
    throw new Error(
      `PostgreSQL not reachable at DATABASE_URL (${redactUrl(config.DATABASE_URL)}): ${(e as Error).message}`,
    );
  }
  return knex;
}
