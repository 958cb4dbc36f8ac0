import { RpcServer, type ServerSettings } from "../../kit/src/server.js";
import { type DomainDeps, routes, services } from "./routes.js";

/** Builds the domain unit's server; `listen` is the caller's (tests listen on port 0). */
export function createServer(deps: DomainDeps, settings: ServerSettings): RpcServer {
  return new RpcServer({ unit: "domain", services, routes: routes(deps), ...settings });
}
