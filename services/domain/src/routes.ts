import type { ConnectRouter } from "@connectrpc/connect";
import { CatalogService } from "../../../gen/telco/domain/v1/catalog_pb.js";
import { CatalogServiceImpl } from "./handlers/catalog-service.js";
import type { CatalogStore, ExtrasStore } from "./store/catalog-store.js";

export interface DomainDeps {
  catalog: CatalogStore;
  extras: ExtrasStore;
}

export const services = [CatalogService];

export const routes = (deps: DomainDeps) => (router: ConnectRouter) => {
  router.service(CatalogService, new CatalogServiceImpl(deps.catalog, deps.extras));
};
