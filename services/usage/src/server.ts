import type { Logger } from "../../kit/src/logger.js";
import { RpcServer } from "../../kit/src/server.js";
import { routes, services, type UsageDeps } from "./routes.js";

export interface ServerSettings {
  logger: Logger;
  tls?: { cert: Buffer; key: Buffer };
  drainDelayMs?: number;
  drainTimeoutMs?: number;
}

/** Builds the usage unit's server; `listen` is the caller's (tests listen on port 0). */
export function createServer(deps: UsageDeps, settings: ServerSettings): RpcServer {
  return new RpcServer({ unit: "usage", services, routes: routes(deps), ...settings });
}
