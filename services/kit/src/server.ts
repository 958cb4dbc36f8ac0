import { setMaxListeners } from "node:events";
import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import * as net from "node:net";
import { Duplex } from "node:stream";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { file_google_rpc_error_details } from "../../../gen/google/rpc/error_details_pb.js";
import { Health } from "../../../gen/grpc/health/v1/health_pb.js";
import { authGate, type Policy, type TokenVerifier } from "./auth.js";
import { HealthRegistry, ServingStatus } from "./health.js";
import type { Logger } from "./logger.js";
import {
  DescriptorIndex,
  reflectionV1,
  reflectionV1Alpha,
  ServerReflectionV1,
  ServerReflectionV1Alpha,
} from "./reflection.js";
import { accessLog, observedGate, serverTelemetry } from "./rpc-telemetry.js";
import { invalidArgumentOnUnparseable } from "./unparseable.js";

export interface RpcServerOptions {
  unit: string;
  /** The unit's own services: health reports them, reflection describes them. */
  services: DescService[];
  routes: (router: ConnectRouter) => void;
  logger: Logger;
  interceptors?: Interceptor[];
  /** PEM certificate and key: serve TLS (HTTP/2 via ALPN, HTTP/1.1 allowed). Plain h2c + HTTP/1.1 otherwise. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /**
   * Token verification and the unit's role policy; "none" only for servers with no business
   * methods (health and reflection only), such as test fixtures.
   */
  auth: { verifier: TokenVerifier; policy: Policy } | "none";
  /** Largest request message accepted, in bytes. */
  readMaxBytes?: number;
  /** Before refusing new calls, keep serving (with health NOT_SERVING) this long so load balancers notice. */
  drainDelayMs?: number;
  /** In-flight calls get this long to finish before they are cancelled. */
  drainTimeoutMs?: number;
  /**
   * Plain documents served on GET / HEAD at exact paths besides the RPCs (the domain unit's JWK
   * set); every other non-RPC request is a 404.
   */
  documents?: Record<string, { contentType: string; body: string }>;
}

export interface Listening {
  host: string;
  port: number;
  url: string;
}

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0");
const SNIFF_TIMEOUT_MS = 10_000;

/**
 * A Connect server for one unit: gRPC, gRPC-Web and the Connect protocol on one port, plus
 * grpc.health.v1 and gRPC server reflection. Without TLS one port takes both HTTP/2 with prior
 * knowledge (gRPC clients, grpcurl -plaintext, buf curl --http2-prior-knowledge) and HTTP/1.1
 * (curl, browsers speaking Connect or gRPC-Web): the first bytes of a connection decide.
 *
 * Built here, started by `listen`: tests start it on port 0.
 */
export class RpcServer {
  readonly health: HealthRegistry;
  readonly index: DescriptorIndex;
  /** Aborted when draining starts: long server streams (watches, live updates) end on it. */
  readonly draining: AbortSignal;
  private readonly drainController = new AbortController();
  /** Aborted when the drain timeout is over: every handler's context signal fires. */
  private readonly shutdown = new AbortController();
  private readonly h2: http2.Http2Server | http2.Http2SecureServer;
  private readonly h1: http.Server | undefined;
  private readonly front: net.Server | undefined;
  private readonly sessions = new Set<http2.Http2Session>();
  private readonly sockets = new Set<net.Socket>();
  private active = 0;
  private idle: (() => void) | undefined;
  private state: "new" | "listening" | "draining" | "closed" = "new";

  constructor(private readonly opts: RpcServerOptions) {
    const names = opts.services.map((s) => s.typeName);
    this.health = new HealthRegistry(names);
    // The error detail types ride along so that clients using reflection can decode them.
    this.index = new DescriptorIndex(
      [...opts.services, Health, ServerReflectionV1, ServerReflectionV1Alpha],
      [file_google_rpc_error_details],
    );
    this.draining = this.drainController.signal;
    // Every call in flight listens on the shutdown signal: hundreds of them are normal.
    setMaxListeners(0, this.shutdown.signal, this.drainController.signal);

    const handler = connectNodeAdapter({
      routes: (router) => {
        opts.routes(router);
        router.service(Health, this.health.impl());
        router.service(ServerReflectionV1, reflectionV1(this.index));
        router.service(ServerReflectionV1Alpha, reflectionV1Alpha(this.index));
        // Bodies that are not Protobuf: INVALID_ARGUMENT, not INTERNAL (see unparseable.ts).
        router.handlers.splice(0, router.handlers.length, ...router.handlers.map(invalidArgumentOnUnparseable));
      },
      // The telemetry interceptor is outermost: its span and duration cover everything else.
      interceptors: [serverTelemetry, accessLog(opts.logger), answerOnShutdown, ...(opts.interceptors ?? [])],
      ...(opts.auth === "none" ? {} : { requestGate: observedGate(authGate(opts.auth.verifier, opts.auth.policy)) }),
      shutdownSignal: this.shutdown.signal,
      readMaxBytes: opts.readMaxBytes ?? 4 * 1024 * 1024,
      fallback: (req, res) => {
        const path = (req.url ?? "").split("?")[0] ?? "";
        const doc = Object.hasOwn(opts.documents ?? {}, path) ? opts.documents?.[path] : undefined;
        if (doc && (req.method === "GET" || req.method === "HEAD")) {
          res.writeHead(200, {
            "content-type": doc.contentType,
            "content-length": Buffer.byteLength(doc.body),
            "cache-control": "public, max-age=300",
          });
          if (req.method === "HEAD") res.end();
          else res.end(doc.body);
          return;
        }
        res.writeHead(doc ? 405 : 404, doc ? { allow: "GET, HEAD" } : {});
        res.end();
      },
    });

    // Count calls in flight so that a drain knows when it is done.
    const tracked = (
      req: http.IncomingMessage | http2.Http2ServerRequest,
      res: http.ServerResponse | http2.Http2ServerResponse,
    ) => {
      this.active++;
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        this.active--;
        if (this.active === 0) this.idle?.();
      };
      res.once("close", finish);
      res.once("finish", finish);
      // While draining, an HTTP/1.1 caller is told not to reuse the connection: it will be closed.
      if (this.state === "draining" && res instanceof http.ServerResponse) res.shouldKeepAlive = false;
      handler(req as http2.Http2ServerRequest, res as http2.Http2ServerResponse);
    };

    if (opts.tls) {
      this.h2 = http2.createSecureServer({ cert: opts.tls.cert, key: opts.tls.key, allowHTTP1: true }, tracked);
    } else {
      this.h2 = http2.createServer({}, tracked);
      this.h1 = http.createServer(tracked);
      this.h1.on("connection", (s: net.Socket) => this.track(s));
      this.front = net.createServer((socket) => this.route(socket));
    }
    this.h2.on("session", (session: http2.Http2Session) => {
      this.sessions.add(session);
      session.once("close", () => this.sessions.delete(session));
    });
    if (opts.tls) this.h2.on("connection", (s: net.Socket) => this.track(s));
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
  }

  /** Hands a plaintext connection to HTTP/2 or HTTP/1.1 by its first bytes. */
  private route(socket: net.Socket): void {
    this.track(socket);
    // A connection that never says anything is not kept open forever.
    socket.setTimeout(SNIFF_TIMEOUT_MS, () => socket.destroy());
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, H2_PREFACE.length);
      const isH2 = head.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isH2 && head.length < H2_PREFACE.length) return; // need more bytes to decide
      socket.off("data", onData);
      socket.setTimeout(0);
      socket.pause();
      if (isH2) {
        // http2 reads a net.Socket's native handle directly, so bytes already read cannot be put
        // back; a JS duplex in front of the socket replays them (http2 then reads through it).
        this.h2.emit("connection", replaying(socket, head));
      } else {
        socket.unshift(head);
        this.h1?.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  }

  async listen(port: number, host = "127.0.0.1"): Promise<Listening> {
    const srv: net.Server = this.front ?? this.h2;
    await new Promise<void>((resolve, reject) => {
      srv.once("error", reject);
      srv.listen(port, host, () => {
        srv.off("error", reject);
        resolve();
      });
    });
    this.state = "listening";
    const addr = srv.address() as AddressInfo;
    const url = `${this.opts.tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${addr.port}`;
    return { host, port: addr.port, url };
  }

  get inFlight(): number {
    return this.active;
  }

  /**
   * Graceful stop: health turns NOT_SERVING (watchers are told, then their streams end), new calls
   * are still served for drainDelayMs so that load balancers move away, then the port closes,
   * HTTP/2 sessions get GOAWAY, and calls in flight may finish within drainTimeoutMs; whatever is
   * left after that is cancelled with UNAVAILABLE.
   */
  async drain(): Promise<{ cancelled: number }> {
    if (this.state === "draining" || this.state === "closed") return { cancelled: 0 };
    this.state = "draining";
    const log = this.opts.logger;
    this.health.setAll(ServingStatus.NOT_SERVING);
    this.health.close();
    this.drainController.abort();
    const delay = this.opts.drainDelayMs ?? 0;
    log.info({ inFlight: this.active, drainDelayMs: delay }, "draining: health NOT_SERVING");
    if (delay > 0) await sleep(delay);

    const closed = new Promise<void>((resolve) => (this.front ?? this.h2).close(() => resolve()));
    this.h1?.close();
    for (const s of this.sessions) s.close();
    this.h1?.closeIdleConnections();

    let cancelled = 0;
    if (this.active > 0) {
      const timeout = this.opts.drainTimeoutMs ?? 10_000;
      const finished = await Promise.race([
        new Promise<boolean>((resolve) => {
          this.idle = () => resolve(true);
        }),
        sleep(timeout).then(() => false),
      ]);
      if (!finished) {
        cancelled = this.active;
        log.warn({ inFlight: this.active, drainTimeoutMs: timeout }, "drain timeout: cancelling calls still in flight");
        this.shutdown.abort(new ConnectError("server is shutting down", Code.Unavailable));
        await Promise.race([new Promise<void>((r) => (this.idle = r)), sleep(1000)]);
      }
    }
    for (const s of this.sockets) s.destroy();
    await closed;
    this.state = "closed";
    log.info({ cancelled }, "server closed");
    return { cancelled };
  }
}

/**
 * A unary handler that ignores its context signal would otherwise keep its caller waiting until
 * the socket is destroyed (a bare CANCEL); this answers UNAVAILABLE, which clients may retry.
 */
const answerOnShutdown: Interceptor = (next) => async (req) => {
  if (req.stream) return next(req);
  const signal = req.signal;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () =>
      reject(ConnectError.from(signal.reason ?? new ConnectError("server is shutting down", Code.Unavailable)));
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([next(req), aborted]);
  } finally {
    if (onAbort) signal.removeEventListener("abort", onAbort);
  }
};

/** A duplex over `socket` whose readable side starts with `head`. */
function replaying(socket: net.Socket, head: Buffer): Duplex {
  const duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk, encoding, cb) {
      socket.write(chunk, encoding, cb);
    },
    final(cb) {
      socket.end(cb);
    },
    destroy(err, cb) {
      socket.destroy(err ?? undefined);
      cb(err);
    },
  });
  duplex.push(head);
  socket.on("data", (chunk: Buffer) => {
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.on("end", () => duplex.push(null));
  socket.on("close", () => duplex.destroy());
  socket.on("error", (err) => duplex.destroy(err));
  return duplex;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

/** What a unit's createServer takes besides its dependencies. */
export type ServerSettings = Omit<RpcServerOptions, "unit" | "services" | "routes">;
