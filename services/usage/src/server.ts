import { RpcServer, type ServerSettings } from "../../kit/src/server.js";
import { routes, services, type UsageDeps } from "./routes.js";

/** Builds the usage unit's server; `listen` is the caller's (tests listen on port 0). */
export function createServer(deps: UsageDeps, settings: ServerSettings): RpcServer {
  return new RpcServer({ unit: "usage", services, routes: routes(deps), ...settings });
}
