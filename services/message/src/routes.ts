import type { ConnectRouter } from "@connectrpc/connect";
import { TemplateService } from "../../../gen/telco/message/v1/template_pb.js";
import { TemplateServiceImpl } from "./handlers/template-service.js";
import type { TemplateStore } from "./store/template-store.js";

export interface MessageDeps {
  templates: TemplateStore;
}

export const services = [TemplateService];

export const routes = (deps: MessageDeps) => (router: ConnectRouter) => {
  router.service(TemplateService, new TemplateServiceImpl(deps.templates));
};
