import { Counter, Gauge, Histogram } from "prom-client";
import { registry } from "../../kit/src/metrics.js";
import type { Provider } from "./providers/provider.js";
import type { ChannelName } from "./store/template-store.js";

/** The message unit's own series (besides the kit's RPC and Kafka ones). */
export const messagesTotal = new Counter({
  name: "telco_message_messages_total",
  help: "Dispatch outcomes by channel, provider and status: sent, failed (the provider refused it, or retries ran out), rejected (failed before the provider saw it: no recipient, a template that does not render, too many segments), retried, deferred, unknown (outcome unknown, never resent); delivered / undeliverable from SMSC receipts.",
  labelNames: ["channel", "provider", "status"] as const,
  registers: [registry],
});
export const rateLimitWaits = new Counter({
  name: "telco_message_rate_limit_waits_total",
  help: "Sends that had to wait for the provider's rate slot.",
  labelNames: ["channel", "provider"] as const,
  registers: [registry],
});
export const rateLimitWaitSeconds = new Counter({
  name: "telco_message_rate_limit_wait_seconds_total",
  help: "Time sends spent waiting for the provider's rate slot, in seconds.",
  labelNames: ["channel", "provider"] as const,
  registers: [registry],
});
export const submitDuration = new Histogram({
  name: "telco_message_submit_duration_seconds",
  help: "Time of a provider send (SMPP: every part's submit_sm to its submit_sm_resp), in seconds.",
  labelNames: ["channel", "provider"] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});
export const messagesAccepted = new Counter({
  name: "telco_message_accepted_total",
  help: "Messages created from notification requests and direct sends, by channel.",
  labelNames: ["channel"] as const,
  registers: [registry],
});

const up = new Map<string, { channel: ChannelName; provider: Provider }>();
new Gauge({
  name: "telco_message_provider_up",
  help: "1 while a provider can take sends (SMPP: bound to the SMSC), 0 otherwise.",
  labelNames: ["channel", "provider"] as const,
  registers: [registry],
  collect() {
    for (const { channel, provider } of up.values()) {
      this.set({ channel, provider: provider.name }, provider.available() ? 1 : 0);
    }
  },
});

/** Reports the providers' availability and starts their outcome series at zero. */
export function watchProviders(providers: Map<ChannelName, Provider>): void {
  for (const [channel, provider] of providers) {
    up.set(channel, { channel, provider });
    for (const status of ["sent", "failed", "rejected", "retried", "deferred", "unknown"]) {
      messagesTotal.inc({ channel, provider: provider.name, status }, 0);
    }
    rateLimitWaits.inc({ channel, provider: provider.name }, 0);
    rateLimitWaitSeconds.inc({ channel, provider: provider.name }, 0);
  }
}
