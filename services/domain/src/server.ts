import { JWKS_PATH } from "../../kit/src/auth.js";
import { RpcServer, type ServerSettings } from "../../kit/src/server.js";
import { type DomainDeps, routes, services } from "./routes.js";

/** Builds the domain unit's server; `listen` is the caller's (tests listen on port 0). */
export function createServer(deps: DomainDeps, settings: ServerSettings): RpcServer {
  // The public key set tokens are verified with, for verifiers outside the process (the Istio
  // ingress gateway's RequestAuthentication; istio/base/gateway/request-authentication.yaml).
  const documents = { [JWKS_PATH]: { contentType: "application/json", body: JSON.stringify(deps.signer.jwks()) } };
  return new RpcServer({ unit: "domain", services, routes: routes(deps), documents, ...settings });
}
