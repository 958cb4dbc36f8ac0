import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { Channel } from "../../../../gen/telco/message/v1/events_pb.js";
import {
  type CreateTemplateRequest,
  CreateTemplateResponseSchema,
  type GetTemplateRequest,
  GetTemplateResponseSchema,
  type Template,
  TemplateSchema,
  type TemplateService,
  TemplateStatus,
  VariableType,
} from "../../../../gen/telco/message/v1/template_pb.js";
import { notFound, Violations } from "../../../kit/src/errors.js";
import {
  type ChannelName,
  DuplicateTemplateError,
  type TemplateStore,
  type TemplateVersionRow,
} from "../store/template-store.js";
import { scanPlaceholders, VARIABLE_NAME_RE } from "../templates/placeholders.js";

const NAME_RE = /^[a-z0-9][a-z0-9-]{1,63}$/;
const LOCALE_RE = /^[a-z]{2,3}(-[A-Z]{2})?$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_BODY = 65_536;
const MAX_SUBJECT = 998; // RFC 5322 line limit

const CHANNELS: Record<number, ChannelName> = {
  [Channel.SMS]: "sms",
  [Channel.EMAIL]: "email",
  [Channel.PUSH]: "push",
};
const CHANNEL_OF: Record<ChannelName, Channel> = { sms: Channel.SMS, email: Channel.EMAIL, push: Channel.PUSH };
const STATUS_OF = { draft: TemplateStatus.DRAFT, active: TemplateStatus.ACTIVE, archived: TemplateStatus.ARCHIVED };
const TYPE_NAMES: Record<number, string> = {
  [VariableType.STRING]: "string",
  [VariableType.NUMBER]: "number",
  [VariableType.DATE]: "date",
  [VariableType.MONEY]: "money",
  [VariableType.BYTES]: "bytes",
};
const TYPE_OF: Record<string, VariableType> = Object.fromEntries(
  Object.entries(TYPE_NAMES).map(([k, v]) => [v, Number(k) as VariableType]),
);

function toTemplate(r: TemplateVersionRow): Template {
  return create(TemplateSchema, {
    templateId: r.template_id,
    name: r.name,
    channel: CHANNEL_OF[r.channel],
    locale: r.locale,
    subject: r.subject,
    body: r.body,
    variables: r.variables.map((v) => ({ ...v, type: TYPE_OF[v.type] ?? VariableType.UNSPECIFIED })),
    status: STATUS_OF[r.status],
    version: r.version,
    createdAt: timestampFromDate(r.created_at),
    updatedAt: timestampFromDate(r.updated_at),
  });
}

export class TemplateServiceImpl implements ServiceImpl<typeof TemplateService> {
  constructor(private readonly store: TemplateStore) {}

  async createTemplate(req: CreateTemplateRequest) {
    const v = new Violations();
    v.check(NAME_RE.test(req.name), "name", "required: 2-64 lower-case letters, digits or '-'");
    const channel = CHANNELS[req.channel];
    v.check(channel !== undefined, "channel", "required: SMS, EMAIL or PUSH");
    const locale = req.locale === "" ? "ko-KR" : req.locale;
    v.check(LOCALE_RE.test(locale), "locale", 'a BCP 47 tag such as "ko-KR" or "en-US" (empty = ko-KR)');
    v.check(req.body.trim() !== "", "body", "required");
    v.check(req.body.length <= MAX_BODY, "body", `at most ${MAX_BODY} characters`);
    v.check(req.subject.length <= MAX_SUBJECT, "subject", `at most ${MAX_SUBJECT} characters`);
    if (channel === "email" || channel === "push") {
      v.check(req.subject.trim() !== "", "subject", `required for ${channel} templates`);
    }

    const declared = new Set<string>();
    req.variables.forEach((variable, i) => {
      const field = `variables[${i}]`;
      if (!VARIABLE_NAME_RE.test(variable.name)) v.add(`${field}.name`, "lower snake case, e.g. user_name");
      else if (declared.has(variable.name)) v.add(`${field}.name`, `"${variable.name}" is declared twice`);
      declared.add(variable.name);
      v.check(
        TYPE_NAMES[variable.type] !== undefined,
        `${field}.type`,
        "required: STRING, NUMBER, DATE, MONEY or BYTES",
      );
    });
    for (const [field, text] of [
      ["body", req.body],
      ["subject", req.subject],
    ] as const) {
      const { found, malformed } = scanPlaceholders(text);
      for (const problem of malformed) v.add(field, problem);
      for (const p of found) {
        if (!declared.has(p.name)) v.add(field, `placeholder {{${p.name}}} is not a declared variable`);
      }
    }
    v.throwIfAny();

    try {
      const id = await this.store.create({
        name: req.name,
        channel: channel as ChannelName,
        locale,
        subject: req.subject,
        body: req.body,
        variables: req.variables.map((x) => ({
          name: x.name,
          type: TYPE_NAMES[x.type] as string,
          required: x.required,
          example: x.example,
        })),
      });
      const row = await this.store.get(id, 1);
      if (!row) throw new ConnectError("template vanished after create", Code.Internal);
      return create(CreateTemplateResponseSchema, { template: toTemplate(row) });
    } catch (e) {
      if (e instanceof DuplicateTemplateError) {
        throw new ConnectError(
          `template "${req.name}" already exists for channel ${channel} and locale ${locale}`,
          Code.AlreadyExists,
        );
      }
      throw e;
    }
  }

  async getTemplate(req: GetTemplateRequest) {
    const v = new Violations();
    v.check(UUID_RE.test(req.templateId), "template_id", "required: a UUID");
    v.throwIfAny();
    const row = await this.store.get(req.templateId, req.version);
    if (!row)
      throw notFound(
        req.version > 0 ? `template ${req.templateId} version ${req.version}` : `template ${req.templateId}`,
      );
    return create(GetTemplateResponseSchema, { template: toTemplate(row) });
  }
}
