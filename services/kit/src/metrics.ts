import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/**
 * Prometheus metrics of one process. Every unit has one registry, served on its own HTTP port
 * (METRICS_PORT: usage 9101, message 9102, domain 9103, batch 9104) at /metrics; every series
 * carries the `unit` label. Metric names are a contract with the dashboards and alert rules under
 * deploy/observability (a test checks that those use only names registered here and in the
 * units' metrics modules).
 *
 * Series with a small known set of label values (codes of a result, alert levels) are created at
 * zero when the unit starts, so that a rate is 0 rather than absent before the first event.
 */
export const registry = new Registry();

/** Latency buckets for RPCs and provider submits, in seconds: 1 ms to 10 s. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export const rpcServerRequests = new Counter({
  name: "telco_rpc_server_requests_total",
  help: "RPCs this unit answered, by service, method and gRPC status code name.",
  labelNames: ["service", "method", "code"] as const,
  registers: [registry],
});
export const rpcServerDuration = new Histogram({
  name: "telco_rpc_server_duration_seconds",
  help: "Time from a request's arrival to its last response message, in seconds.",
  labelNames: ["service", "method", "code"] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});
export const rpcClientRequests = new Counter({
  name: "telco_rpc_client_requests_total",
  help: "RPCs this unit made to other units, by service, method and status code name.",
  labelNames: ["service", "method", "code"] as const,
  registers: [registry],
});
export const rpcClientDuration = new Histogram({
  name: "telco_rpc_client_duration_seconds",
  help: "Time of this unit's calls to other units, in seconds.",
  labelNames: ["service", "method", "code"] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const kafkaConsumerLag = new Gauge({
  name: "telco_kafka_consumer_lag",
  help: "Records of a partition not yet committed by the consumer group (log end offset - committed offset): the autoscaling signal.",
  labelNames: ["topic", "partition", "group"] as const,
  registers: [registry],
});
export const kafkaConsumed = new Counter({
  name: "telco_kafka_records_consumed_total",
  help: "Records consumed and committed, by topic and group (dead-lettered ones included).",
  labelNames: ["topic", "group"] as const,
  registers: [registry],
});
export const kafkaDeadLettered = new Counter({
  name: "telco_kafka_records_dead_lettered_total",
  help: "Records sent to <topic>.dlq with a reason, by source topic and group.",
  labelNames: ["topic", "group"] as const,
  registers: [registry],
});
export const kafkaProduced = new Counter({
  name: "telco_kafka_records_produced_total",
  help: "Records this process wrote to Kafka (acknowledged), by topic.",
  labelNames: ["topic"] as const,
  registers: [registry],
});

let defaultsOn = false;

/**
 * Labels the process's series with its unit and adds the process and Node.js metrics
 * (CPU, memory, event-loop lag, GC, handles).
 */
export function initMetrics(unit: string): Registry {
  registry.setDefaultLabels({ unit });
  if (!defaultsOn) {
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });
    defaultsOn = true;
  }
  return registry;
}

/** Every metric name this registry exports, as Prometheus sees it (histograms with their suffixes). */
export async function exportedNames(reg: Registry = registry): Promise<Set<string>> {
  const out = new Set<string>();
  for (const m of await reg.getMetricsAsJSON()) {
    if (String(m.type) === "histogram") {
      for (const s of ["_bucket", "_sum", "_count"]) out.add(m.name + s);
    } else out.add(m.name);
  }
  return out;
}

export interface MetricsServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Serves the registry at http://host:port/metrics (Prometheus text format) and answers
 * /healthz; port 0 picks a free one.
 */
export async function startMetricsServer(port: number, host: string, reg: Registry = registry): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/metrics") {
      reg.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": reg.contentType }).end(text);
        },
        (e: Error) => {
          res.writeHead(500, { "content-type": "text/plain" }).end(`metrics failed: ${e.message}\n`);
        },
      );
      return;
    }
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found: metrics are at /metrics\n");
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  return {
    port: addr.port,
    url: `http://${host.includes(":") ? `[${host}]` : host}:${addr.port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
