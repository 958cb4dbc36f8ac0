import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { type Context, context, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { Logger } from "./logger.js";
import { rpcClientDuration, rpcClientRequests, rpcServerDuration, rpcServerRequests } from "./metrics.js";
import { extractTraceHeaders, injectTraceHeaders, tracer } from "./telemetry.js";

/**
 * Connect has no OpenTelemetry instrumentation, so these interceptors give every RPC a server
 * span (continuing the caller's W3C traceparent from the request headers) and every call a
 * client span (whose context goes out in the headers), named `<package.Service>/<Method>` with
 * the rpc.* semantic conventions, and count them in the RED metrics
 * telco_rpc_{server,client}_{requests_total,duration_seconds}. A streaming RPC's span and
 * duration run to its last message.
 */

/** gRPC's canonical name of a code: OK, INVALID_ARGUMENT, CANCELLED, … */
export function codeName(code: Code | 0): string {
  if (code === 0) return "OK";
  if (code === Code.Canceled) return "CANCELLED";
  const camel = Code[code];
  return camel ? camel.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase() : `CODE_${code}`;
}

function protocolOf(contentType: string | null): "grpc" | "connect_rpc" {
  return contentType?.startsWith("application/grpc") && !contentType.startsWith("application/grpc-web")
    ? "grpc"
    : "connect_rpc";
}

interface Call {
  span: Span;
  started: bigint;
  labels: { service: string; method: string };
  system: "grpc" | "connect_rpc";
}

function begin(method: DescMethod, kind: SpanKind, parent: Context, system: "grpc" | "connect_rpc"): Call {
  const service = method.parent.typeName;
  const span = tracer().startSpan(
    `${service}/${method.name}`,
    { kind, attributes: { "rpc.system": system, "rpc.service": service, "rpc.method": method.name } },
    parent,
  );
  return { span, started: process.hrtime.bigint(), labels: { service, method: method.name }, system };
}

function end(call: Call, side: "server" | "client", error: unknown): void {
  const code = error === undefined ? 0 : ConnectError.from(error).code;
  const name = codeName(code);
  const { span } = call;
  if (call.system === "grpc") span.setAttribute("rpc.grpc.status_code", code);
  else if (code !== 0) span.setAttribute("rpc.connect_rpc.error_code", name.toLowerCase());
  // A server span is an error for the server's own faults only; a client span for any code but OK.
  const serverFault = [
    Code.Unknown,
    Code.DeadlineExceeded,
    Code.Unimplemented,
    Code.Internal,
    Code.Unavailable,
    Code.DataLoss,
  ].includes(code as Code);
  if (code !== 0 && (side === "client" || serverFault)) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: ConnectError.from(error).rawMessage });
  }
  span.end();
  const seconds = Number(process.hrtime.bigint() - call.started) / 1e9;
  const labels = { ...call.labels, code: name };
  if (side === "server") {
    rpcServerRequests.inc(labels);
    rpcServerDuration.observe(labels, seconds);
  } else {
    rpcClientRequests.inc(labels);
    rpcClientDuration.observe(labels, seconds);
  }
}

/**
 * Ends the call when a streamed response is read to its end, fails, or is abandoned: a reader
 * that stops reading does not always close the iterator, so the call's signal ends it too.
 */
function watched<T>(messages: AsyncIterable<T>, signal: AbortSignal, end: (error: unknown) => void): AsyncIterable<T> {
  let ended = false;
  const done = (error: unknown) => {
    if (ended) return;
    ended = true;
    signal.removeEventListener("abort", onAbort);
    end(error);
  };
  const onAbort = () => done(new ConnectError("the call was cancelled", Code.Canceled));
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  return (async function* () {
    let error: unknown;
    try {
      yield* messages;
    } catch (e) {
      error = e;
      throw e;
    } finally {
      done(error);
    }
  })();
}

/**
 * Runs the call, ending its span and counting it when the response is complete: at once for a
 * unary response, at the stream's end for a streamed one.
 */
async function observe<R extends { stream: boolean; message: unknown }>(
  call: Call,
  side: "server" | "client",
  signal: AbortSignal,
  run: () => Promise<R>,
): Promise<R> {
  try {
    const res = await run();
    if (!res.stream) {
      end(call, side, undefined);
      return res;
    }
    return { ...res, message: watched(res.message as AsyncIterable<unknown>, signal, (e) => end(call, side, e)) };
  } catch (e) {
    end(call, side, e);
    throw e;
  }
}

/**
 * One debug line per RPC answered (service, method, code, milliseconds, and the error's message
 * when it failed): off at the default level, and what a test run's personal-data scan reads.
 */
export function accessLog(logger: Logger): Interceptor {
  const log = logger.child({ component: "rpc" });
  return (next) => async (req) => {
    if (!log.isLevelEnabled("debug")) return next(req);
    const started = process.hrtime.bigint();
    const line = (error: unknown) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const e = error === undefined ? undefined : ConnectError.from(error);
      log.debug(
        {
          service: req.service.typeName,
          method: req.method.name,
          code: codeName(e?.code ?? 0),
          ms: Math.round(ms * 10) / 10,
          ...(e ? { error: e.rawMessage } : {}),
        },
        "rpc",
      );
    };
    try {
      const res = await next(req);
      line(undefined);
      return res;
    } catch (e) {
      line(e);
      throw e;
    }
  };
}

/** The server side: a span per RPC, the handler running in its context. */
export const serverTelemetry: Interceptor = (next) => (req) => {
  const parent = extractTraceHeaders(req.header);
  const call = begin(req.method, SpanKind.SERVER, parent, protocolOf(req.header.get("content-type")));
  const ctx = trace.setSpan(parent, call.span);
  return observe(call, "server", req.signal, () => context.with(ctx, () => next(req)));
};

/**
 * Counts and traces requests the auth gate refuses before any interceptor sees them
 * (UNAUTHENTICATED, PERMISSION_DENIED), then passes the refusal on.
 */
export function observedGate(
  gate: (ctx: HandlerContext) => void | Promise<void>,
): (ctx: HandlerContext) => Promise<void> {
  return async (ctx) => {
    try {
      await gate(ctx);
    } catch (e) {
      const call = begin(
        ctx.method,
        SpanKind.SERVER,
        extractTraceHeaders(ctx.requestHeader),
        protocolOf(ctx.requestHeader.get("content-type")),
      );
      end(call, "server", e);
      throw e;
    }
  };
}

/** The client side: a span per call, its context sent in the request headers. */
export const clientTelemetry: Interceptor = (next) => (req) => {
  const parent = context.active();
  const call = begin(req.method, SpanKind.CLIENT, parent, protocolOf(req.header.get("content-type")));
  injectTraceHeaders(trace.setSpan(parent, call.span), req.header);
  return observe(call, "client", req.signal, () => next(req));
};
