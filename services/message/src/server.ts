import { RpcServer, type ServerSettings } from "../../kit/src/server.js";
import { type MessageDeps, routes, services } from "./routes.js";

/** Builds the message unit's server; `listen` is the caller's (tests listen on port 0). */
export function createServer(deps: MessageDeps, settings: ServerSettings): RpcServer {
  return new RpcServer({ unit: "message", services, routes: routes(deps), ...settings });
}
