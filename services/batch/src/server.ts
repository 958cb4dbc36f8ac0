import { RpcServer, type ServerSettings } from "../../kit/src/server.js";
import { type BatchDeps, routes, services } from "./routes.js";

/** Builds the batch unit's server; `listen` is the caller's (tests listen on port 0). */
export function createServer(deps: BatchDeps, settings: ServerSettings): RpcServer {
  return new RpcServer({ unit: "batch", services, routes: routes(deps), ...settings });
}
