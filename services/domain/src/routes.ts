import type { ConnectRouter } from "@connectrpc/connect";
import { AuthService } from "../../../gen/telco/domain/v1/auth_pb.js";
import { CatalogService } from "../../../gen/telco/domain/v1/catalog_pb.js";
import { EVERYONE, type Policy, type TokenSigner } from "../../kit/src/auth.js";
import { AuthServiceImpl } from "./handlers/auth-service.js";
import { CatalogServiceImpl } from "./handlers/catalog-service.js";
import type { CatalogStore, ExtrasStore } from "./store/catalog-store.js";
import type { OperatorStore } from "./store/operator-store.js";

export interface DomainDeps {
  catalog: CatalogStore;
  extras: ExtrasStore;
  operators: OperatorStore;
  signer: TokenSigner;
  tokenTtlSeconds: number;
}

export const services = [CatalogService, AuthService];

/** Roles per method; the request gate enforces it before a body is read. */
export const policy: Policy = {
  ListPlans: EVERYONE,
  GetPlan: EVERYONE,
  ListVas: EVERYONE,
  ListDiscounts: EVERYONE,
  // Login is open (it is how a caller gets a token); listed for completeness of the policy.
  Login: EVERYONE,
};

export const routes = (deps: DomainDeps) => (router: ConnectRouter) => {
  router.service(CatalogService, new CatalogServiceImpl(deps.catalog, deps.extras));
  router.service(AuthService, new AuthServiceImpl(deps.operators, deps.signer, deps.tokenTtlSeconds));
};
