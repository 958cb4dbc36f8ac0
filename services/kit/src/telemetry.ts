import { createRequire } from "node:module";
import {
  type Attributes,
  type Context,
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";

/**
 * OpenTelemetry tracing of one unit. Off unless an OTLP endpoint is configured
 * (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; OTEL_SDK_DISABLED=true
 * turns it off anyway). When on, the NodeSDK exports spans over OTLP as the standard OTEL_*
 * variables say (protocol http/protobuf by default, sampler parentbased_always_on unless
 * OTEL_TRACES_SAMPLER says otherwise), with the instrumentations of @grpc/grpc-js callers,
 * ioredis and pg. Connect RPCs get their spans from this kit's interceptors (rpc-telemetry.ts),
 * Kafka records from the kit's consumer and `publishSpan`.
 *
 * When it is off the API's no-op tracer is in place: spans cost next to nothing and a span
 * started under an incoming traceparent carries that same trace context on, so traces still
 * continue across this process once a collector is added.
 */

export interface Telemetry {
  enabled: boolean;
  /** Flushes the spans still buffered and stops exporting. */
  shutdown(): Promise<void>;
}

export const TRACER_NAME = "telco";

let cached: ReturnType<typeof trace.getTracer> | undefined;
let on = false;

export function tracer() {
  cached ??= trace.getTracer(TRACER_NAME);
  return cached;
}

/**
 * Whether this process exports spans. Hot paths (a Kafka record's consumer span) skip their span
 * work when it does not: the incoming trace context then travels on unchanged.
 */
export function tracingOn(): boolean {
  return on;
}

type Env = Record<string, string | undefined>;

export function telemetryEnabled(env: Env = process.env): boolean {
  if ((env.OTEL_SDK_DISABLED ?? "").toLowerCase() === "true") return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

let started: Telemetry | undefined;

/**
 * Starts tracing for `unit` (service.name; service.namespace "telco") if it is configured. Call it
 * before the unit's clients are created. Modules already imported (ESM imports are evaluated
 * first) are patched by requiring them once more after the SDK's hooks are in place: the
 * instrumentations patch their prototypes, which every instance shares.
 */
export async function startTelemetry(unit: string, env: Env = process.env): Promise<Telemetry> {
  if (started) return started;
  if (!telemetryEnabled(env)) {
    started = { enabled: false, shutdown: async () => {} };
    return started;
  }
  // This process exports traces only: metrics go to Prometheus from the unit's own endpoint,
  // logs to stdout.
  process.env.OTEL_METRICS_EXPORTER ??= "none";
  process.env.OTEL_LOGS_EXPORTER ??= "none";
  process.env.OTEL_TRACES_EXPORTER ??= "otlp";
  const [{ NodeSDK }, { GrpcInstrumentation }, { IORedisInstrumentation }, { PgInstrumentation }, resources] =
    await Promise.all([
      import("@opentelemetry/sdk-node"),
      import("@opentelemetry/instrumentation-grpc"),
      import("@opentelemetry/instrumentation-ioredis"),
      import("@opentelemetry/instrumentation-pg"),
      import("@opentelemetry/resources"),
    ]);
  const sdk = new NodeSDK({
    serviceName: unit,
    resource: resources.resourceFromAttributes({ "service.namespace": "telco" }),
    instrumentations: [
      new GrpcInstrumentation(),
      // Only inside a trace: the aggregator's and dispatcher's own polling would otherwise be a
      // root span per command.
      // Commands only, no arguments: the aggregator's script takes thousands of line ids.
      new IORedisInstrumentation({ requireParentSpan: true, dbStatementSerializer: (cmd) => cmd }),
      new PgInstrumentation({ requireParentSpan: true, enhancedDatabaseReporting: false }),
    ],
  });
  sdk.start();
  cached = undefined;
  on = true;
  const require = createRequire(import.meta.url);
  for (const m of ["ioredis", "pg", "@grpc/grpc-js"]) require(m);
  started = { enabled: true, shutdown: () => sdk.shutdown() };
  return started;
}

const w3c = new W3CTraceContextPropagator();

/** The context a W3C traceparent (and tracestate) continues; the root context when there is none or it is malformed. */
export function contextFromTraceparent(traceparent: string | undefined, tracestate?: string): Context {
  if (!traceparent) return ROOT_CONTEXT;
  const carrier: Record<string, string> = { traceparent };
  if (tracestate) carrier.tracestate = tracestate;
  return w3c.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter);
}

/** The W3C traceparent of a span (whether recording or not), or "" when it has no valid context. */
export function traceparentOf(span: Span | undefined): string {
  if (!span) return "";
  const carrier: Record<string, string> = {};
  w3c.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, defaultTextMapSetter);
  return carrier.traceparent ?? "";
}

/** Writes the context's traceparent / tracestate into headers (gRPC metadata, Kafka headers). */
export function injectTraceHeaders(ctx: Context, headers: { set(k: string, v: string): void }): void {
  w3c.inject(ctx, headers, { set: (h, k, v) => h.set(k, v) });
}

export function extractTraceHeaders(headers: { get(k: string): string | null | undefined }): Context {
  return w3c.extract(ROOT_CONTEXT, headers, {
    get: (h, k) => h.get(k) ?? undefined,
    keys: () => ["traceparent", "tracestate"],
  });
}

/**
 * Runs `fn` in a new span (the active one while it runs), ending it when `fn` settles; a thrown
 * error marks the span as failed and is rethrown.
 */
export async function inSpan<T>(
  name: string,
  o: { kind?: SpanKind; attributes?: Attributes; parent?: Context },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = o.parent ?? context.active();
  const span = tracer().startSpan(name, { kind: o.kind ?? SpanKind.INTERNAL, attributes: o.attributes }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (e) {
    failSpan(span, e);
    throw e;
  } finally {
    span.end();
  }
}

export function failSpan(span: Span, e: unknown): void {
  const err = e instanceof Error ? e : new Error(String(e));
  span.recordException(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
}

export type { Context, Span };
export { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace };
