import type { ConnectRouter } from "@connectrpc/connect";
import { TemplateService } from "../../../gen/telco/message/v1/template_pb.js";
import { type Policy, STAFF, WRITERS } from "../../kit/src/auth.js";
import { TemplateServiceImpl } from "./handlers/template-service.js";
import type { TemplateStore } from "./store/template-store.js";

export interface MessageDeps {
  templates: TemplateStore;
}

export const services = [TemplateService];

/** Roles per method; the request gate enforces it before a body is read. */
export const policy: Policy = {
  CreateTemplate: WRITERS,
  GetTemplate: [...STAFF, "service"],
};

export const routes = (deps: MessageDeps) => (router: ConnectRouter) => {
  router.service(TemplateService, new TemplateServiceImpl(deps.templates));
};
