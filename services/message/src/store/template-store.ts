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

export class DuplicateTemplateError extends Error {}

const PG_UNIQUE_VIOLATION = "23505";

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
    const q = this.knex("template_versions as v")
      .join("templates as t", "t.template_id", "v.template_id")
      .select<TemplateVersionRow[]>(
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
      )
      .where("t.template_id", templateId);
    if (version > 0) q.where("v.version", version);
    else q.orderByRaw("(v.status = 'active') desc, v.version desc");
    return q.first();
  }
}
