import { Counter } from "prom-client";
import { registry } from "../../kit/src/metrics.js";

/** The usage unit's own series (besides the kit's RPC and Kafka ones). */
export const usageEvents = new Counter({
  name: "telco_usage_events_total",
  help: "Usage events taken by the aggregator: counted, dropped as duplicates (a producer's retry or a redelivery), dead-lettered.",
  labelNames: ["result"] as const,
  registers: [registry],
});
export const usageAlerts = new Counter({
  name: "telco_usage_alerts_total",
  help: "Threshold alerts published to notification.requests, by level (50, 80, 100).",
  labelNames: ["level"] as const,
  registers: [registry],
});
export const notificationsRelayed = new Counter({
  name: "telco_usage_notifications_relayed_total",
  help: "Notification requests the relay moved from the Redis outbox to Kafka.",
  registers: [registry],
});

for (const result of ["counted", "duplicate", "dead_lettered"]) usageEvents.inc({ result }, 0);
for (const level of ["50", "80", "100"]) usageAlerts.inc({ level }, 0);
