/**
 * The portal's local gateway: what the Istio ingress gateway does in a cluster
 * (istio/base/gateway), for `npm start` and the browser tests. It serves the built portal
 * (services/portal/dist) and passes the RPCs people use — by exact path, the same table the
 * cluster's VirtualService routes (every RPC whose role policy admits admin, operator, viewer or
 * subscriber) — to their unit, as they are: the units speak Connect and gRPC-Web themselves, and
 * check the caller's token and role. Every other RPC path is a 404 here, as at the edge.
 *
 *   PORTAL_PORT (8080), PORTAL_HOST (127.0.0.1), USAGE_URL / MESSAGE_URL / DOMAIN_URL / BATCH_URL
 *   (the units, default http://127.0.0.1:50051..50054).
 */
import { createReadStream, existsSync, statSync } from "node:fs";
import http from "node:http";
import { extname, join, normalize, sep } from "node:path";
import { pipeline } from "node:stream";
import { fileURLToPath } from "node:url";
import type { DescService } from "@bufbuild/protobuf";
import type { Policy } from "../kit/src/auth.js";

export const UNITS = ["usage", "message", "domain", "batch"] as const;
export type PortalUnit = (typeof UNITS)[number];
const PEOPLE = new Set(["admin", "operator", "viewer", "subscriber"]);
const HERE = fileURLToPath(new URL(".", import.meta.url));
export const DIST = join(HERE, "dist");

/** The RPC paths people use, each with the unit that serves it (from the units' policies and contracts). */
export async function peopleRoutes(): Promise<Map<string, PortalUnit>> {
  const routes = new Map<string, PortalUnit>();
  for (const unit of UNITS) {
    const { policy, services } = (await import(`../${unit}/src/routes.js`)) as {
      policy: Policy;
      services: DescService[];
    };
    for (const s of services) {
      for (const m of s.methods) {
        if ((policy[m.name] ?? []).some((r) => PEOPLE.has(r))) routes.set(`/${s.typeName}/${m.name}`, unit);
      }
    }
  }
  return routes;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".woff2": "font/woff2",
};

/** Headers passed on to a unit and back (hop-by-hop ones are not). */
const HOP = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "upgrade",
  "host",
  "proxy-connection",
  "te",
  "trailer",
]);

export interface GatewayOptions {
  upstreams: Record<PortalUnit, string>;
  dist?: string;
  log?: (line: string) => void;
}

export async function createGateway(o: GatewayOptions): Promise<http.Server> {
  const routes = await peopleRoutes();
  const dist = o.dist ?? DIST;
  const log = o.log ?? (() => {});
  return http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (path.startsWith("/telco.")) {
      const unit = routes.get(path);
      if (!unit || req.method !== "POST") {
        res.writeHead(404, { "content-type": "text/plain" }).end("no such route\n");
        return;
      }
      const target = new URL(path, o.upstreams[unit]);
      const headers: http.OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k) && v !== undefined) headers[k] = v;
      const up = http.request(target, { method: "POST", headers }, (ur) => {
        const back: http.OutgoingHttpHeaders = {};
        for (const [k, v] of Object.entries(ur.headers)) if (!HOP.has(k) && v !== undefined) back[k] = v;
        res.writeHead(ur.statusCode ?? 502, back);
        res.flushHeaders();
        // A unit that drops a stream midway ends the browser's response too (it then reconnects).
        pipeline(ur, res, (err) => {
          if (err) res.destroy();
        });
      });
      up.on("error", (e) => {
        // The browser went first (a closed page): nothing to report.
        if (res.destroyed || req.destroyed) return;
        log(`gateway: ${unit} unreachable: ${e.message}`);
        if (!res.headersSent) {
          // A Connect error body, so that the portal shows it as any other error.
          res.writeHead(503, { "content-type": "application/json" });
          res.end(JSON.stringify({ code: "unavailable", message: `the ${unit} unit is unreachable` }));
        } else res.destroy();
      });
      // The browser went away (a closed page ends a live stream): so does the call to the unit.
      res.on("close", () => up.destroy());
      req.pipe(up);
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    // Static files; every other path is the single-page application.
    let decoded: string;
    try {
      decoded = decodeURIComponent(path);
    } catch {
      res.writeHead(400, { "content-type": "text/plain" }).end("malformed path\n");
      return;
    }
    const file = normalize(join(dist, decoded));
    const inside = file.startsWith(dist + sep);
    const chosen = inside && existsSync(file) && statSync(file).isFile() ? file : join(dist, "index.html");
    if (!existsSync(chosen)) {
      res.writeHead(503, { "content-type": "text/plain" }).end("the portal is not built: npm run portal:build\n");
      return;
    }
    res.writeHead(200, {
      "content-type": TYPES[extname(chosen)] ?? "application/octet-stream",
      // Hashed asset names never change; the page itself is always fetched again.
      "cache-control": chosen.includes(`${sep}assets${sep}`) ? "public, max-age=31536000, immutable" : "no-cache",
      "x-content-type-options": "nosniff",
    });
    if (req.method === "HEAD") res.end();
    else createReadStream(chosen).pipe(res);
  });
}

/** The units' URLs from the environment (those of `npm start` by default). */
export function upstreamsFromEnv(env: NodeJS.ProcessEnv = process.env): Record<PortalUnit, string> {
  const ports: Record<PortalUnit, number> = { usage: 50051, message: 50052, domain: 50053, batch: 50054 };
  const out = {} as Record<PortalUnit, string>;
  for (const u of UNITS) out[u] = env[`${u.toUpperCase()}_URL`] || `http://127.0.0.1:${ports[u]}`;
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === normalize(process.argv[1])) {
  const port = Number(process.env.PORTAL_PORT ?? 8080);
  const host = process.env.PORTAL_HOST ?? "127.0.0.1";
  const server = await createGateway({ upstreams: upstreamsFromEnv(), log: (l) => console.error(l) });
  server.listen(port, host, () => console.log(`portal: http://${host}:${port}`));
  for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => server.close(() => process.exit(0)));
}
