import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { BadRequest_FieldViolationSchema, BadRequestSchema } from "../../../../gen/google/rpc/error_details_pb.js";
import { Channel } from "../../../../gen/telco/message/v1/events_pb.js";
import {
  type CreateTemplateRequest,
  CreateTemplateResponseSchema,
  DiffLine_Op,
  type DiffTemplateVersionsRequest,
  DiffTemplateVersionsResponseSchema,
  type GetTemplateRequest,
  GetTemplateResponseSchema,
  type ListTemplatesRequest,
  ListTemplatesResponseSchema,
  type ListTemplateVersionsRequest,
  ListTemplateVersionsResponseSchema,
  type PublishTemplateRequest,
  PublishTemplateResponseSchema,
  type RenderPreviewRequest,
  RenderPreviewResponseSchema,
  type RollbackTemplateRequest,
  RollbackTemplateResponseSchema,
  SmsEncoding,
  type SmsInfo,
  SmsInfoSchema,
  type Template,
  TemplateSchema,
  type TemplateService,
  TemplateStatus,
  type TemplateVariable,
  type UpdateTemplateRequest,
  UpdateTemplateResponseSchema,
  VariableType,
} from "../../../../gen/telco/message/v1/template_pb.js";
import {
  decodePageToken,
  encodePageToken,
  invalidArgument,
  notFound,
  pageSize,
  Violations,
} from "../../../kit/src/errors.js";
import { countSms, DEFAULT_MAX_SEGMENTS } from "../sms/segments.js";
import {
  type ChannelName,
  DuplicateTemplateError,
  StaleVersionError,
  TemplateNotFoundError,
  type TemplateStore,
  type TemplateVersionRow,
  type VariableJson,
  VersionNotFoundError,
  VersionStateError,
} from "../store/template-store.js";
import { diffLines, diffVariables } from "../templates/diff.js";
import { scanPlaceholders, VARIABLE_NAME_RE } from "../templates/placeholders.js";
import { RenderError, renderTemplate } from "../templates/render.js";

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

const DIFF_OP = { same: DiffLine_Op.SAME, added: DiffLine_Op.ADDED, removed: DiffLine_Op.REMOVED } as const;

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

interface TemplateContent {
  subject: string;
  body: string;
  variables: TemplateVariable[];
}

/**
 * The checks every saved text passes, on create and on each edit: sizes, the subject an e-mail or
 * push needs, well-formed unique variables, and no placeholder the version does not declare.
 * `channel` undefined (template not known yet): the channel's own rules are skipped.
 */
function checkContent(v: Violations, channel: ChannelName | undefined, c: TemplateContent): void {
  v.check(c.body.trim() !== "", "body", "required");
  v.check(c.body.length <= MAX_BODY, "body", `at most ${MAX_BODY} characters`);
  v.check(c.subject.length <= MAX_SUBJECT, "subject", `at most ${MAX_SUBJECT} characters`);
  if (channel === "email" || channel === "push") {
    v.check(c.subject.trim() !== "", "subject", `required for ${channel} templates`);
  }

  const declared = new Set<string>();
  c.variables.forEach((variable, i) => {
    const field = `variables[${i}]`;
    if (!VARIABLE_NAME_RE.test(variable.name)) v.add(`${field}.name`, "lower snake case, e.g. user_name");
    else if (declared.has(variable.name)) v.add(`${field}.name`, `"${variable.name}" is declared twice`);
    declared.add(variable.name);
    v.check(TYPE_NAMES[variable.type] !== undefined, `${field}.type`, "required: STRING, NUMBER, DATE, MONEY or BYTES");
  });
  for (const [field, text] of [
    ["body", c.body],
    ["subject", c.subject],
  ] as const) {
    const { found, malformed } = scanPlaceholders(text);
    for (const problem of malformed) v.add(field, problem);
    for (const p of found) {
      if (!declared.has(p.name)) v.add(field, `placeholder {{${p.name}}} is not a declared variable`);
    }
  }
}

const toVariableJson = (variables: TemplateVariable[]): VariableJson[] =>
  variables.map((x) => ({
    name: x.name,
    type: TYPE_NAMES[x.type] as string,
    required: x.required,
    example: x.example,
  }));

/** ABORTED naming the field: the caller re-reads the latest version and applies its edit to it. */
function staleBase(e: StaleVersionError): ConnectError {
  const description =
    `version ${e.baseVersion} is not the latest version (${e.latestVersion}): another edit was saved ` +
    `since; start again from version ${e.latestVersion}`;
  return new ConnectError(`base_version: ${description}`, Code.Aborted, undefined, [
    {
      desc: BadRequestSchema,
      value: create(BadRequestSchema, {
        fieldViolations: [create(BadRequest_FieldViolationSchema, { field: "base_version", description })],
      }),
    },
  ]);
}

const versionName = (templateId: string, version: number) => `template ${templateId} version ${version}`;

/** Store errors of a template change as the caller's status codes. */
function mapChangeError(e: unknown, templateId: string): unknown {
  if (e instanceof TemplateNotFoundError) return notFound(`template ${templateId}`);
  if (e instanceof VersionNotFoundError) return notFound(versionName(templateId, e.version));
  if (e instanceof StaleVersionError) return staleBase(e);
  if (e instanceof VersionStateError) return new ConnectError(e.message, Code.FailedPrecondition);
  return e;
}

export interface TemplateServiceOptions {
  /** The most segments an SMS may have (previews report it; longer texts cannot be sent). */
  smsMaxSegments?: number;
}

export class TemplateServiceImpl implements ServiceImpl<typeof TemplateService> {
  private readonly smsMaxSegments: number;

  constructor(
    private readonly store: TemplateStore,
    opts: TemplateServiceOptions = {},
  ) {
    this.smsMaxSegments = opts.smsMaxSegments ?? DEFAULT_MAX_SEGMENTS;
    if (!Number.isInteger(this.smsMaxSegments) || this.smsMaxSegments < 1) {
      throw new Error(`smsMaxSegments must be a positive integer, got ${opts.smsMaxSegments}`);
    }
  }

  async createTemplate(req: CreateTemplateRequest) {
    const v = new Violations();
    v.check(NAME_RE.test(req.name), "name", "required: 2-64 lower-case letters, digits or '-'");
    const channel = CHANNELS[req.channel];
    v.check(channel !== undefined, "channel", "required: SMS, EMAIL or PUSH");
    const locale = req.locale === "" ? "ko-KR" : req.locale;
    v.check(LOCALE_RE.test(locale), "locale", 'a BCP 47 tag such as "ko-KR" or "en-US" (empty = ko-KR)');
    checkContent(v, channel, req);
    v.throwIfAny();

    try {
      const id = await this.store.create({
        name: req.name,
        channel: channel as ChannelName,
        locale,
        subject: req.subject,
        body: req.body,
        variables: toVariableJson(req.variables),
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
    if (!row) throw notFound(req.version > 0 ? versionName(req.templateId, req.version) : `template ${req.templateId}`);
    return create(GetTemplateResponseSchema, { template: toTemplate(row) });
  }

  async updateTemplate(req: UpdateTemplateRequest) {
    const v = new Violations();
    const idOk = v.check(UUID_RE.test(req.templateId), "template_id", "required: a UUID");
    v.check(req.baseVersion >= 1, "base_version", "required: the version the edit starts from");
    // The channel decides whether a subject is required; it never changes, so reading it outside
    // the store's transaction is safe.
    let channel: ChannelName | undefined;
    if (idOk) {
      const current = await this.store.get(req.templateId, 0);
      if (!current) throw notFound(`template ${req.templateId}`);
      channel = current.channel;
    }
    checkContent(v, channel, req);
    v.throwIfAny();
    try {
      const row = await this.store.addVersion(req.templateId, req.baseVersion, {
        subject: req.subject,
        body: req.body,
        variables: toVariableJson(req.variables),
      });
      return create(UpdateTemplateResponseSchema, { template: toTemplate(row) });
    } catch (e) {
      throw mapChangeError(e, req.templateId);
    }
  }

  async publishTemplate(req: PublishTemplateRequest) {
    const row = await this.activate(req.templateId, req.version, "publish");
    return create(PublishTemplateResponseSchema, { template: toTemplate(row) });
  }

  async rollbackTemplate(req: RollbackTemplateRequest) {
    const row = await this.activate(req.templateId, req.version, "rollback");
    return create(RollbackTemplateResponseSchema, { template: toTemplate(row) });
  }

  private async activate(templateId: string, version: number, mode: "publish" | "rollback") {
    const v = new Violations();
    v.check(UUID_RE.test(templateId), "template_id", "required: a UUID");
    v.check(version >= 1, "version", "required: a version number (1 or more)");
    v.throwIfAny();
    try {
      return await this.store.activate(templateId, version, mode);
    } catch (e) {
      throw mapChangeError(e, templateId);
    }
  }

  async listTemplateVersions(req: ListTemplateVersionsRequest) {
    const v = new Violations();
    v.check(UUID_RE.test(req.templateId), "template_id", "required: a UUID");
    v.throwIfAny();
    const rows = await this.store.listVersions(req.templateId);
    if (rows.length === 0) throw notFound(`template ${req.templateId}`);
    return create(ListTemplateVersionsResponseSchema, { versions: rows.map(toTemplate) });
  }

  async listTemplates(req: ListTemplatesRequest) {
    const v = new Violations();
    const channel = CHANNELS[req.channel];
    v.check(
      req.channel === Channel.UNSPECIFIED || channel !== undefined,
      "channel",
      "SMS, EMAIL, PUSH or unspecified (all)",
    );
    const limit = pageSize(req.pageSize, 100, 500, v);
    const token = decodePageToken(req.pageToken, v);
    let after: [string, string, string] | undefined;
    if (token !== undefined) {
      // The token is the last (name, channel, locale) key seen, as JSON.
      try {
        const key: unknown = typeof token === "string" ? JSON.parse(token) : undefined;
        if (Array.isArray(key) && key.length === 3 && key.every((k) => typeof k === "string")) {
          after = key as [string, string, string];
        }
      } catch {
        // reported below
      }
      v.check(after !== undefined, "page_token", "not a token returned by a previous call");
    }
    v.throwIfAny();
    // One row more than asked tells whether another page follows.
    const rows = await this.store.list({ channel, after, limit: limit + 1 });
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return create(ListTemplatesResponseSchema, {
      templates: page.map(toTemplate),
      nextPageToken:
        rows.length > limit && last ? encodePageToken(JSON.stringify([last.name, last.channel, last.locale])) : "",
    });
  }

  async diffTemplateVersions(req: DiffTemplateVersionsRequest) {
    const v = new Violations();
    v.check(UUID_RE.test(req.templateId), "template_id", "required: a UUID");
    v.check(req.fromVersion >= 1, "from_version", "required: a version number (1 or more)");
    v.check(req.toVersion >= 1, "to_version", "required: a version number (1 or more)");
    v.throwIfAny();
    const [from, to] = await Promise.all([
      this.store.get(req.templateId, req.fromVersion),
      this.store.get(req.templateId, req.toVersion),
    ]);
    if (!from) throw notFound(versionName(req.templateId, req.fromVersion));
    if (!to) throw notFound(versionName(req.templateId, req.toVersion));
    const toLines = (changes: ReturnType<typeof diffLines>) =>
      changes.map((c) => ({ op: DIFF_OP[c.op], text: c.text }));
    const vars = diffVariables(from.variables, to.variables);
    return create(DiffTemplateVersionsResponseSchema, {
      subject: toLines(diffLines(from.subject, to.subject)),
      body: toLines(diffLines(from.body, to.body)),
      variablesAdded: vars.added,
      variablesRemoved: vars.removed,
      variablesChanged: vars.changed,
    });
  }

  async renderPreview(req: RenderPreviewRequest) {
    const v = new Violations();
    v.check(UUID_RE.test(req.templateId), "template_id", "required: a UUID");
    v.throwIfAny();
    const row = await this.store.get(req.templateId, req.version);
    if (!row) throw notFound(req.version > 0 ? versionName(req.templateId, req.version) : `template ${req.templateId}`);

    const declared = new Set(row.variables.map((x) => x.name));
    for (const name of Object.keys(req.variables)) {
      if (declared.has(name)) continue;
      // Only a well-formed name is echoed back: a key could be anything, even a pasted value.
      if (VARIABLE_NAME_RE.test(name)) v.add(`variables.${name}`, `not a variable of version ${row.version}`);
      else v.add("variables", "a key that is not a variable name");
    }
    v.throwIfAny();

    // A variable not given takes its declared example (null prototype: names like "constructor").
    const values: Record<string, string> = Object.create(null);
    for (const x of row.variables) if (x.example !== "") values[x.name] = x.example;
    for (const [name, value] of Object.entries(req.variables)) values[name] = value;

    let rendered: { subject: string; body: string };
    try {
      rendered = renderTemplate(row, values, { html: row.channel === "email" });
    } catch (e) {
      if (!(e instanceof RenderError)) throw e;
      const stored = e.problems.find((p) => p.reason === "undeclared");
      if (stored) {
        throw new ConnectError(
          `version ${row.version} uses {{${stored.variable}}} without declaring it`,
          Code.Internal,
        );
      }
      throw invalidArgument(
        e.problems.map((p) => ({
          field: `variables.${p.variable}`,
          description: p.reason === "missing" ? "required: no value given and no example declared" : p.description,
        })),
      );
    }

    let sms: SmsInfo | undefined;
    if (row.channel === "sms") {
      const c = countSms(rendered.body, this.smsMaxSegments);
      sms = create(SmsInfoSchema, {
        encoding: c.encoding === "gsm7" ? SmsEncoding.GSM7 : SmsEncoding.UCS2,
        units: c.units,
        segments: c.segments,
        longMessage: c.longMessage,
        maxSegments: c.maxSegments,
        remainingInSegment: c.remainingInSegment,
      });
    }
    return create(RenderPreviewResponseSchema, {
      template: toTemplate(row),
      subject: rendered.subject,
      body: rendered.body,
      sms,
    });
  }
}
