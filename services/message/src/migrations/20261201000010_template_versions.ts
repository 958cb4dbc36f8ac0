import type { Knex } from "knex";

// "An edit never overwrites" kept by the database itself, not only by the code: a version's text,
// variables, number and creation time can never change, and a version that has been published
// never becomes a draft again. Only its status (draft → active → archived → active ...) and
// updated_at move. Sends pinned to a version can therefore trust that it still says what it said.
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    create function message.template_versions_immutable() returns trigger language plpgsql as $$
    begin
      if new.template_id is distinct from old.template_id
         or new.version is distinct from old.version
         or new.subject is distinct from old.subject
         or new.body is distinct from old.body
         or new.variables is distinct from old.variables
         or new.created_at is distinct from old.created_at then
        raise exception 'template version % of % is immutable: an edit is a new version', old.version, old.template_id
          using errcode = 'integrity_constraint_violation';
      end if;
      if new.status = 'draft' and old.status <> 'draft' then
        raise exception 'template version % of % was published: it cannot become a draft again', old.version, old.template_id
          using errcode = 'integrity_constraint_violation';
      end if;
      return new;
    end $$;
    create trigger template_versions_immutable before update on message.template_versions
      for each row execute function message.template_versions_immutable();
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`
    drop trigger template_versions_immutable on message.template_versions;
    drop function message.template_versions_immutable();
  `);
}
