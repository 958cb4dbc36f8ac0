import type { Knex } from "knex";

export type ChannelName = "sms" | "email" | "push";
export type StatusName = "draft" | "active" | "archived";

export interface VariableJson {
  name: string;
  type: string;
  required: boolean;
  example: string;
}

export interface TemplateVersionRow {
  template_id: string;
  name: string;
  channel: ChannelName;
  locale: string;
  subject: string;
  body: string;
  variables: VariableJson[];
  status: StatusName;
  version: number;
  created_at: Date;
  updated_at: Date;
}

export type VersionContent = Pick<TemplateVersionRow, "subject" | "body" | "variables">;

export class DuplicateTemplateError extends Error {}
export class TemplateNotFoundError extends Error {}
export class VersionNotFoundError extends Error {
  constructor(readonly version: number) {
    super(`version ${version} not found`);
  }
}
/** An edit that does not start from the latest version: it would silently drop the newer one. */
export class StaleVersionError extends Error {
  constructor(
    readonly baseVersion: number,
    readonly latestVersion: number,
  ) {
    super(`base version ${baseVersion} is not the latest (${latestVersion})`);
  }
}
/** A publish or rollback the template's current state does not allow. */
export class VersionStateError extends Error {}

const PG_UNIQUE_VIOLATION = "23505";

const VERSION_COLUMNS = [
  "t.template_id",
  "t.name",
  "t.channel",
  "t.locale",
  "v.subject",
  "v.body",
  "v.variables",
  "v.status",
  "v.version",
  "v.created_at",
  "v.updated_at",
];

/** Versions joined with their template, on the pool or inside a transaction. */
const versions = (k: Knex | Knex.Transaction) =>
  k("template_versions as v")
    .join("templates as t", "t.template_id", "v.template_id")
    .select<TemplateVersionRow[]>(VERSION_COLUMNS);

/** Active first, then newest: what "version 0" means. */
const ACTIVE_OR_LATEST = "(v.status = 'active') desc, v.version desc";

export class TemplateStore {
  constructor(private readonly knex: Knex) {}

  /** Creates the template and its version 1, as a draft, in one transaction. */
  async create(t: Omit<TemplateVersionRow, "template_id" | "status" | "version" | "created_at" | "updated_at">) {
    try {
      return await this.knex.transaction(async (trx) => {
        const [tpl] = await trx("templates")
          .insert({ name: t.name, channel: t.channel, locale: t.locale })
          .returning<{ template_id: string }[]>("template_id");
        if (!tpl) throw new Error("insert returned no row");
        await trx("template_versions").insert({
          template_id: tpl.template_id,
          version: 1,
          subject: t.subject,
          body: t.body,
          variables: JSON.stringify(t.variables),
          status: "draft",
        });
        return tpl.template_id;
      });
    } catch (e) {
      if ((e as { code?: string }).code === PG_UNIQUE_VIOLATION) throw new DuplicateTemplateError();
      throw e;
    }
  }

  /** A version; version 0 = the active one, or the latest when none is active. */
  async get(templateId: string, version: number): Promise<TemplateVersionRow | undefined> {
    const q = versions(this.knex).where("t.template_id", templateId);
    if (version > 0) q.where("v.version", version);
    else q.orderByRaw(ACTIVE_OR_LATEST);
    return q.first();
  }

  /** Every version, newest first; empty when the template does not exist (each has a version 1). */
  async listVersions(templateId: string): Promise<TemplateVersionRow[]> {
    return versions(this.knex).where("t.template_id", templateId).orderBy("v.version", "desc");
  }

  /**
   * Each template's active version (or latest), ordered by (name, channel, locale), the unique
   * key, so paging by it is exact and walks the unique index.
   */
  async list(opts: {
    channel?: ChannelName;
    after?: [name: string, channel: string, locale: string];
    limit: number;
  }): Promise<TemplateVersionRow[]> {
    const q = this.knex("templates as t")
      .joinRaw(
        `cross join lateral (
           select v.subject, v.body, v.variables, v.status, v.version, v.created_at, v.updated_at
           from template_versions v where v.template_id = t.template_id
           order by ${ACTIVE_OR_LATEST} limit 1) v`,
      )
      .select<TemplateVersionRow[]>(VERSION_COLUMNS)
      .orderBy([{ column: "t.name" }, { column: "t.channel" }, { column: "t.locale" }])
      .limit(opts.limit);
    if (opts.channel) q.where("t.channel", opts.channel);
    if (opts.after) q.whereRaw("(t.name, t.channel, t.locale) > (?, ?, ?)", opts.after);
    return q;
  }

  /**
   * Stores an edit as version latest+1, a draft, when `baseVersion` is the latest version. The
   * template row is locked first (as publish and rollback do), so two edits from the same base
   * cannot both be stored: the second sees the first's version and gets StaleVersionError.
   */
  async addVersion(templateId: string, baseVersion: number, content: VersionContent): Promise<TemplateVersionRow> {
    return this.knex.transaction(async (trx) => {
      await lockTemplate(trx, templateId);
      const latest = await trx("template_versions")
        .where({ template_id: templateId })
        .max<{ max: number | null }>("version as max")
        .first();
      const latestVersion = latest?.max ?? 0;
      if (baseVersion > latestVersion) throw new VersionNotFoundError(baseVersion);
      if (baseVersion < latestVersion) throw new StaleVersionError(baseVersion, latestVersion);
      await trx("template_versions").insert({
        template_id: templateId,
        version: latestVersion + 1,
        subject: content.subject,
        body: content.body,
        variables: JSON.stringify(content.variables),
        status: "draft",
      });
      return (await versions(trx)
        .where({ "t.template_id": templateId, "v.version": latestVersion + 1 })
        .first()) as TemplateVersionRow;
    });
  }

  /**
   * Makes `version` the active one and archives the one active before, in one transaction on
   * the locked template row: concurrent publishes of a template run one after the other, the
   * last one wins, and there is never a moment with two active versions (the partial unique
   * index would refuse it) or none. Publishing the active version again changes nothing.
   *
   * `rollback`: the version must be below the active one (an "undo"); going forward is a publish.
   */
  async activate(templateId: string, version: number, mode: "publish" | "rollback"): Promise<TemplateVersionRow> {
    return this.knex.transaction(async (trx) => {
      await lockTemplate(trx, templateId);
      const target = await trx("template_versions")
        .where({ template_id: templateId, version })
        .first<{ version: number; status: StatusName } | undefined>("version", "status");
      if (!target) throw new VersionNotFoundError(version);
      const active = await trx("template_versions")
        .where({ template_id: templateId, status: "active" })
        .first<{ version: number } | undefined>("version");
      if (mode === "rollback") {
        if (!active) throw new VersionStateError("the template has no active version to roll back from; publish one");
        if (version >= active.version) {
          throw new VersionStateError(
            `version ${version} is not older than the active version ${active.version}; ` +
              "a rollback goes to a lower version (publish a newer one instead)",
          );
        }
      }
      if (active?.version !== version) {
        // Archive first: the one-active index is checked per statement, not at commit.
        if (active) {
          await trx("template_versions")
            .where({ template_id: templateId, version: active.version })
            .update({ status: "archived", updated_at: trx.fn.now() });
        }
        await trx("template_versions")
          .where({ template_id: templateId, version })
          .update({ status: "active", updated_at: trx.fn.now() });
      }
      return (await versions(trx)
        .where({ "t.template_id": templateId, "v.version": version })
        .first()) as TemplateVersionRow;
    });
  }
}

/** Locks the template row for the rest of the transaction; every change of a template's versions takes it first. */
async function lockTemplate(trx: Knex.Transaction, templateId: string): Promise<void> {
  const row = await trx("templates").where({ template_id: templateId }).forUpdate().first("template_id");
  if (!row) throw new TemplateNotFoundError();
}
