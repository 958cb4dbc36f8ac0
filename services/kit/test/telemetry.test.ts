/**
 * The kit's Connect interceptors, in-process against a real server over gRPC and the Connect
 * protocol: a client span whose context travels in the headers, a server span under it with the
 * rpc.* conventions, RED metrics by code (refusals of the auth gate included), streaming spans
 * that end with the stream, and log lines naming the active trace.
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, beforeEach, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { Health, HealthCheckResponse_ServingStatus } from "../../../gen/grpc/health/v1/health_pb.js";
import { UsageService } from "../../../gen/telco/usage/v1/usage_pb.js";
import { verifier } from "../../../test/support/auth.js";
import { testLogger } from "../../../test/support/env.js";
import { policy as usagePolicy } from "../../usage/src/routes.js";
import { createLogger } from "../src/logger.js";
import { exportedNames, registry, rpcClientRequests, rpcServerRequests, startMetricsServer } from "../src/metrics.js";
import { clientTelemetry, codeName } from "../src/rpc-telemetry.js";
import { RpcServer } from "../src/server.js";
import { inSpan, SpanKind, traceparentOf, tracer } from "../src/telemetry.js";

const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
provider.register();

let server: RpcServer;
let url = "";

before(async () => {
  server = new RpcServer({
    unit: "kit-test",
    services: [UsageService],
    // No implementation: the gate refuses before it would matter, or the call is UNIMPLEMENTED.
    routes: (router) => router.service(UsageService, {}),
    logger: testLogger("kit-test"),
    auth: { verifier, policy: usagePolicy },
  });
  url = (await server.listen(0)).url;
});
after(async () => {
  await server.drain();
  await provider.shutdown();
});
beforeEach(() => exporter.reset());

const counter = async (c: typeof rpcServerRequests, labels: Record<string, string>) =>
  ((await c.get()).values.find((v) =>
    Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x),
  )?.value ?? 0) as number;

function spanNamed(spans: ReadableSpan[], name: string, kind: SpanKind): ReadableSpan {
  const s = spans.find((x) => x.name === name && x.kind === kind);
  assert.ok(
    s,
    `a ${SpanKind[kind]} span ${name}; have ${spans.map((x) => `${SpanKind[x.kind]} ${x.name}`).join(", ")}`,
  );
  return s;
}

describe("RPC tracing and metrics", () => {
  for (const [protocol, transport] of [
    ["grpc", () => createGrpcTransport({ baseUrl: url, interceptors: [clientTelemetry] })],
    [
      "connect_rpc",
      () => createConnectTransport({ baseUrl: url, httpVersion: "1.1", interceptors: [clientTelemetry] }),
    ],
  ] as const) {
    it(`links the client span and the server span of a ${protocol} call, with rpc.* attributes`, async () => {
      const client = createClient(Health, transport());
      const before = await counter(rpcServerRequests, {
        service: "grpc.health.v1.Health",
        method: "Check",
        code: "OK",
      });
      const parentTp = await inSpan("caller", {}, async (span) => {
        const r = await client.check({ service: "" });
        assert.equal(r.status, HealthCheckResponse_ServingStatus.SERVING);
        return traceparentOf(span);
      });
      const spans = exporter.getFinishedSpans();
      const caller = spanNamed(spans, "caller", SpanKind.INTERNAL);
      const c = spanNamed(spans, "grpc.health.v1.Health/Check", SpanKind.CLIENT);
      const s = spanNamed(spans, "grpc.health.v1.Health/Check", SpanKind.SERVER);
      assert.equal(parentTp.split("-")[1], caller.spanContext().traceId);
      assert.equal(c.spanContext().traceId, caller.spanContext().traceId, "one trace");
      assert.equal(c.parentSpanContext?.spanId, caller.spanContext().spanId);
      assert.equal(s.parentSpanContext?.spanId, c.spanContext().spanId, "the server continues the caller's context");
      for (const span of [c, s]) {
        assert.equal(span.attributes["rpc.system"], protocol);
        assert.equal(span.attributes["rpc.service"], "grpc.health.v1.Health");
        assert.equal(span.attributes["rpc.method"], "Check");
      }
      if (protocol === "grpc") assert.equal(s.attributes["rpc.grpc.status_code"], 0);
      assert.equal(
        await counter(rpcServerRequests, { service: "grpc.health.v1.Health", method: "Check", code: "OK" }),
        before + 1,
      );
    });
  }

  it("counts an error by its code; the server span is an error only for the server's own faults", async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl: url, interceptors: [clientTelemetry] }));
    const before = await counter(rpcClientRequests, { method: "Check", code: "NOT_FOUND" });
    await assert.rejects(
      client.check({ service: "no.such.Service" }),
      (e) => ConnectError.from(e).code === Code.NotFound,
    );
    const spans = exporter.getFinishedSpans();
    const s = spanNamed(spans, "grpc.health.v1.Health/Check", SpanKind.SERVER);
    const c = spanNamed(spans, "grpc.health.v1.Health/Check", SpanKind.CLIENT);
    assert.equal(s.attributes["rpc.grpc.status_code"], Code.NotFound);
    assert.equal(s.status.code, 0, "NOT_FOUND is the caller's problem: server span not an error");
    assert.equal(c.status.code, 2, "the client span records the failure");
    assert.equal(await counter(rpcClientRequests, { method: "Check", code: "NOT_FOUND" }), before + 1);
    const unimplemented = createClient(UsageService, createGrpcTransport({ baseUrl: url }));
    // Refused by the auth gate before any interceptor runs: still counted and traced.
    const refusedBefore = await counter(rpcServerRequests, { method: "GetLineUsage", code: "UNAUTHENTICATED" });
    await assert.rejects(unimplemented.getLineUsage({}), (e) => ConnectError.from(e).code === Code.Unauthenticated);
    assert.equal(
      await counter(rpcServerRequests, { method: "GetLineUsage", code: "UNAUTHENTICATED" }),
      refusedBefore + 1,
    );
    assert.ok(
      exporter
        .getFinishedSpans()
        .some((x) => x.name === "telco.usage.v1.UsageService/GetLineUsage" && x.kind === SpanKind.SERVER),
    );
  });

  it("ends a server-streaming call's span when the stream ends", async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl: url, interceptors: [clientTelemetry] }));
    const abort = new AbortController();
    const stream = client.watch({ service: "" }, { signal: abort.signal });
    for await (const m of stream) {
      assert.equal(m.status, HealthCheckResponse_ServingStatus.SERVING);
      break; // leaving the loop cancels the call
    }
    abort.abort();
    const spans = await waitFor(() => {
      const s = exporter.getFinishedSpans().filter((x) => x.name === "grpc.health.v1.Health/Watch");
      return s.length === 2 ? s : undefined;
    });
    assert.deepEqual(spans.map((s) => s.kind).sort(), [SpanKind.SERVER, SpanKind.CLIENT].sort());
  });

  it("names codes as gRPC does", () => {
    assert.equal(codeName(0), "OK");
    assert.equal(codeName(Code.Canceled), "CANCELLED");
    assert.equal(codeName(Code.InvalidArgument), "INVALID_ARGUMENT");
    assert.equal(codeName(Code.DeadlineExceeded), "DEADLINE_EXCEEDED");
  });
});

describe("log lines in a span", () => {
  it("carry the trace and span ids; outside a span they carry none", async () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _e, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const log = createLogger({ unit: "kit-test", destination });
    const span = tracer().startSpan("work");
    await inSpan("work", {}, async (s) => {
      log.info("inside");
      assert.ok(s.spanContext().traceId);
    });
    span.end();
    log.info("outside");
    const [inside, outside] = lines.map((l) => JSON.parse(l) as Record<string, string>);
    const work = exporter
      .getFinishedSpans()
      .find((x) => x.name === "work" && x.spanContext().traceId === inside?.trace_id);
    assert.ok(work, "the line names the span's trace");
    assert.equal(inside?.span_id, work.spanContext().spanId);
    assert.equal(outside?.trace_id, undefined);
  });
});

describe("the metrics endpoint", () => {
  it("serves the registry in Prometheus text format at /metrics, 404 elsewhere", async () => {
    const m = await startMetricsServer(0, "127.0.0.1");
    try {
      const res = await fetch(m.url);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /text\/plain/);
      const text = await res.text();
      assert.match(text, /^# TYPE telco_rpc_server_requests_total counter$/m);
      assert.match(
        text,
        /^telco_rpc_server_requests_total\{service="grpc.health.v1.Health",method="Check",code="OK"\} \d+$/m,
      );
      const names = await exportedNames(registry);
      assert.ok(names.has("telco_rpc_server_duration_seconds_bucket"));
      assert.equal((await fetch(m.url.replace("/metrics", "/nope"))).status, 404);
    } finally {
      await m.close();
    }
  });
});

async function waitFor<T>(probe: () => T | undefined, ms = 5_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 50));
  }
}
