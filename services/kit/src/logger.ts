import { context, isSpanContextValid, trace } from "@opentelemetry/api";
import { type Logger, type LoggerOptions, pino } from "pino";

export type { Logger } from "pino";

/**
 * Field names that carry personal data (template `variables` hold names and numbers too). Whatever
 * object is logged, these keys are replaced by "[redacted]" at the top level and up to three
 * levels down, so a careless `log.info({ customer })` does not write a phone number to stdout.
 * This is a safety net: code logs ids, never personal values.
 */
export const PERSONAL_FIELDS = [
  "name",
  "fullName",
  "full_name",
  "firstName",
  "lastName",
  "phone",
  "phoneNumber",
  "phone_number",
  "msisdn",
  "destination",
  "destinationAddr",
  "destination_addr",
  "email",
  "emailAddress",
  "email_address",
  "birthDate",
  "birth_date",
  "dateOfBirth",
  "address",
  "to",
  "recipient",
  "recipients",
  "variables",
  "password",
  "token",
  "authorization",
] as const;

export function redactPaths(fields: readonly string[] = PERSONAL_FIELDS): string[] {
  return fields.flatMap((f) => [f, `*.${f}`, `*.*.${f}`, `*.*.*.${f}`]);
}

export interface LoggerSettings {
  unit: string;
  level?: string;
  /** Where to write; stdout by default (one JSON object per line). */
  destination?: NodeJS.WritableStream;
}

export function createLogger({ unit, level = "info", destination }: LoggerSettings): Logger {
  const options: LoggerOptions = {
    level,
    base: { unit, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    messageKey: "msg",
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: redactPaths(), censor: "[redacted]" },
    // Lines written inside a span (an RPC, a Kafka record's processing) name its trace, so Loki
    // links them to Tempo.
    mixin: traceFields,
  };
  return destination ? pino(options, destination as pino.DestinationStream) : pino(options);
}

/** trace_id and span_id of the active span, if there is one. */
export function traceFields(): Record<string, string> {
  const span = trace.getSpan(context.active());
  if (!span) return {};
  const sc = span.spanContext();
  return isSpanContextValid(sc) ? { trace_id: sc.traceId, span_id: sc.spanId } : {};
}
