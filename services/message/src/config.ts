import { ConfigError, type ConfigOf, defineConfig, loadConfig } from "../../kit/src/config.js";
import { checkTimeZone, commonSpec, metricsPortSpec } from "../../kit/src/settings.js";
import { parseQuietHours } from "./delivery/quiet-hours.js";

export const COMPONENTS = ["intake", "dispatcher", "relay"] as const;

export const spec = defineConfig({
  ...commonSpec,
  MESSAGE_PORT: {
    type: "int",
    min: 0,
    max: 65_535,
    default: 50052,
    description: "Port of the message unit (gRPC, gRPC-Web, Connect).",
  },
  METRICS_PORT: metricsPortSpec(9102),
  MESSAGE_DB_POOL_MAX: {
    type: "int",
    min: 1,
    max: 200,
    default: 10,
    description: "PostgreSQL connections of the message unit.",
  },
  MESSAGE_COMPONENTS: {
    type: "list",
    default: [...COMPONENTS],
    description:
      "What this process runs besides the RPCs: intake (consumes notification.requests), dispatcher (sends due messages), relay (publishes message.results and dead letters); `none` = RPCs only.",
  },
  NOTIFICATION_TOPIC: { type: "string", default: "notification.requests", description: "Requests consumed." },
  MESSAGE_RESULTS_TOPIC: { type: "string", default: "message.results", description: "Status changes produced." },
  MESSAGE_GROUP: { type: "string", default: "message-intake", description: "Consumer group of the intake." },
  MESSAGE_PROVIDER_SMS: { type: "string", default: "smpp", description: "Provider module of the SMS channel." },
  MESSAGE_PROVIDER_EMAIL: { type: "string", default: "smtp", description: "Provider module of the e-mail channel." },
  MESSAGE_PROVIDER_PUSH: { type: "string", default: "fcm", description: "Provider module of the push channel." },
  MESSAGE_RATE_SMS: {
    type: "int",
    min: 0,
    max: 1_000_000,
    default: 100,
    description: "SMS sends per second at the SMSC, across every dispatcher (GCRA in Redis); 0 = no limit.",
  },
  MESSAGE_RATE_EMAIL: {
    type: "int",
    min: 0,
    max: 1_000_000,
    default: 50,
    description: "E-mails per second; 0 = no limit.",
  },
  MESSAGE_RATE_PUSH: {
    type: "int",
    min: 0,
    max: 1_000_000,
    default: 500,
    description: "Pushes per second; 0 = no limit.",
  },
  MESSAGE_RATE_BURST: {
    type: "int",
    min: 1,
    max: 10_000,
    default: 1,
    description: "Sends a provider may get back to back above its rate (1 = evenly spaced).",
  },
  MESSAGE_DAILY_CAP: {
    type: "int",
    min: 0,
    max: 10_000,
    default: 20,
    description: "Messages per line, channel and day (carrier time zone); more wait for the next day; 0 = no cap.",
  },
  MESSAGE_QUIET_HOURS: {
    type: "string",
    default: "21:00-08:00",
    description: 'Local hours in which non-urgent messages wait for the end ("off" = none).',
  },
  MESSAGE_DEFAULT_LOCALE: {
    type: "string",
    default: "ko-KR",
    description: "Locale of templates when a request names none (or an unknown one).",
  },
  MESSAGE_SMS_MAX_SEGMENTS: {
    type: "int",
    min: 1,
    max: 255,
    default: 10,
    description: "Most SMS segments one message may take; a longer text fails (permanent).",
  },
  MESSAGE_MAX_ATTEMPTS: {
    type: "int",
    min: 1,
    max: 100,
    default: 5,
    description: "Sends a transient provider error may cost before the request is dead-lettered.",
  },
  MESSAGE_RETRY_BASE_MS: {
    type: "int",
    min: 1,
    max: 3_600_000,
    default: 1_000,
    description: "First retry delay (doubles each attempt, with jitter).",
  },
  MESSAGE_RETRY_MAX_MS: { type: "int", min: 1, max: 86_400_000, default: 300_000, description: "Longest retry delay." },
  MESSAGE_DISPATCH_CONCURRENCY: {
    type: "int",
    min: 1,
    max: 1_000,
    default: 32,
    description: "Messages one dispatcher works on at once.",
  },
  MESSAGE_DISPATCH_POLL_MS: {
    type: "int",
    min: 10,
    max: 60_000,
    default: 200,
    description: "Pause after finding nothing due.",
  },
  MESSAGE_CLAIM_LEASE_MS: {
    type: "int",
    min: 1_000,
    max: 3_600_000,
    default: 60_000,
    description: "How long a dispatcher's claim on a message holds; a dead dispatcher's claims are recovered after it.",
  },
  DOMAIN_URL: {
    type: "url",
    protocols: ["http", "https"],
    default: "http://127.0.0.1:50053",
    description: "The domain unit (recipients are read from its SubscriptionService.GetLineContact).",
  },
  SERVICE_SIGNING_KEY: {
    type: "string",
    default: "",
    secret: true,
    description:
      "Ed25519 private key this unit signs its service tokens with (public half = the domain unit's AUTH_VERIFY_KEY). Needed by the dispatcher.",
  },
});

export type MessageConfig = ConfigOf<typeof spec>;

export function readConfig(env: Record<string, string | undefined> = process.env): MessageConfig {
  const config = loadConfig(spec, env);
  const problems: string[] = [];
  const tz = checkTimeZone(config.TIME_ZONE);
  if (tz) problems.push(tz);
  if (config.MESSAGE_COMPONENTS.length === 1 && config.MESSAGE_COMPONENTS[0] === "none") config.MESSAGE_COMPONENTS = [];
  const unknown = config.MESSAGE_COMPONENTS.filter((c) => !(COMPONENTS as readonly string[]).includes(c));
  if (unknown.length > 0)
    problems.push(`MESSAGE_COMPONENTS must list only ${COMPONENTS.join(", ")} (got ${unknown.join(", ")})`);
  try {
    parseQuietHours(config.MESSAGE_QUIET_HOURS);
  } catch (e) {
    problems.push(`MESSAGE_QUIET_HOURS: ${(e as Error).message}`);
  }
  if (config.MESSAGE_COMPONENTS.includes("dispatcher") && config.SERVICE_SIGNING_KEY === "") {
    problems.push("SERVICE_SIGNING_KEY is required when MESSAGE_COMPONENTS includes dispatcher (to read recipients)");
  }
  if (config.MESSAGE_RETRY_MAX_MS < config.MESSAGE_RETRY_BASE_MS) {
    problems.push("MESSAGE_RETRY_MAX_MS must be at least MESSAGE_RETRY_BASE_MS");
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
