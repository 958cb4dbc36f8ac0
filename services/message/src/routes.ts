import type { ConnectRouter } from "@connectrpc/connect";
import { MessageService } from "../../../gen/telco/message/v1/message_pb.js";
import { TemplateService } from "../../../gen/telco/message/v1/template_pb.js";
import { EVERYONE, type Policy, STAFF, WRITERS } from "../../kit/src/auth.js";
import { type Clock, parseQuietHours, systemClock, ZonedTime } from "./delivery/quiet-hours.js";
import { MessageServiceImpl } from "./handlers/message-service.js";
import { TemplateServiceImpl } from "./handlers/template-service.js";
import type { MessageStore } from "./store/message-store.js";
import type { TemplateStore } from "./store/template-store.js";

export interface MessageDeps {
  templates: TemplateStore;
  messages: MessageStore;
  /** Defaults: the system clock, Asia/Seoul, 21:00-08:00, 10 segments. */
  clock?: Clock;
  timeZone?: string;
  quietHours?: string;
  smsMaxSegments?: number;
  /** A message accepted for now (the dispatcher of this process may look at once). */
  onAccepted?: () => void;
}

export const services = [TemplateService, MessageService];

/** Roles per method; the request gate enforces it before a body is read. */
export const policy: Policy = {
  CreateTemplate: WRITERS,
  GetTemplate: [...STAFF, "service"],
  UpdateTemplate: WRITERS,
  PublishTemplate: WRITERS,
  RollbackTemplate: WRITERS,
  ListTemplateVersions: [...STAFF, "service"],
  ListTemplates: [...STAFF, "service"],
  DiffTemplateVersions: STAFF,
  RenderPreview: [...STAFF, "service"],
  SendMessage: [...WRITERS, "service"],
  CancelMessage: [...WRITERS, "service"],
  // Subscribers see their own lines' messages only (the handlers check the line).
  GetMessage: EVERYONE,
  ListMessages: EVERYONE,
};

export const routes = (deps: MessageDeps) => (router: ConnectRouter) => {
  router.service(
    TemplateService,
    new TemplateServiceImpl(deps.templates, { smsMaxSegments: deps.smsMaxSegments ?? 10 }),
  );
  router.service(
    MessageService,
    new MessageServiceImpl({
      messages: deps.messages,
      templates: deps.templates,
      clock: deps.clock ?? systemClock,
      zone: new ZonedTime(deps.timeZone ?? "Asia/Seoul"),
      quiet: parseQuietHours(deps.quietHours ?? "21:00-08:00"),
      onAccepted: deps.onAccepted,
    }),
  );
};
