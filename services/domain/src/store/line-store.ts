import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "knex";
import { NotificationKind, NotificationRequestSchema } from "../../../../gen/telco/message/v1/events_pb.js";
import type { Principal } from "../../../kit/src/auth.js";
import { notFound } from "../../../kit/src/errors.js";
import { holdNumber, type NumberSourceName, takeNumber } from "./number-pool.js";
import { appendDomainEvent, appendNotification } from "./outbox.js";

/**
 * Lines and their history. Every change runs in a transaction that first locks the line's row,
 * so the line's changes (and the sequence numbers of their events) are serial per line, and
 * writes its outbox records in that same transaction. Plan / VAS / discount history is a set of
 * [from, to) ranges; the exclusion constraints of the schema refuse overlaps whatever we do here.
 */

export type LineStatusName = "active" | "suspended" | "terminated";

export interface LineRow {
  subscription_id: string;
  customer_id: string;
  number_id: string;
  number_sealed: Buffer;
  status: LineStatusName;
  activated_at: Date;
  terminated_at: Date | null;
  /** The plan in force now; for a terminated line, its last plan. */
  plan_id: string | null;
  quota_bytes: string | null;
}

export interface PeriodRow {
  item_id: string;
  valid_from: Date;
  valid_to: Date | null;
}

export interface StatusRow {
  status: LineStatusName;
  at: Date;
  reason: string;
}

export interface QuotaRow {
  subscription_id: string;
  plan_id: string;
  quota_bytes: string;
  line_sequence: string;
  /** A plan change that takes effect later: its quota and start. */
  next_quota_bytes: string | null;
  next_from: Date | null;
}

export type Headers = Record<string, string>;

const failedPrecondition = (message: string) => new ConnectError(message, Code.FailedPrecondition);
const aborted = (message: string) => new ConnectError(message, Code.Aborted);

const LINE_SELECT = `
  select s.subscription_id, s.customer_id, s.number_id, n.number_sealed, s.status, s.activated_at,
         s.terminated_at, cp.plan_id, p.quota_bytes
    from domain.subscriptions s
    join domain.numbers n on n.number_id = s.number_id
    left join lateral (
      select sp.plan_id from domain.subscription_plan sp
       where sp.subscription_id = s.subscription_id and lower(sp.valid) <= clock_timestamp()
       order by lower(sp.valid) desc limit 1) cp on true
    left join domain.plans p on p.plan_id = cp.plan_id`;

/** The two add-on histories, which behave alike. */
const ADDONS = {
  vas: { table: "domain.subscription_vas", column: "vas_id", catalogue: "domain.vas", what: "value-added service" },
  discount: {
    table: "domain.subscription_discount",
    column: "discount_id",
    catalogue: "domain.discounts",
    what: "discount",
  },
} as const;
export type AddonKind = keyof typeof ADDONS;

export class LineStore {
  constructor(private readonly knex: Knex) {}

  transaction<T>(run: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
    return this.knex.transaction(run);
  }

  async getLine(subscriptionId: string, db: Knex | Knex.Transaction = this.knex): Promise<LineRow | undefined> {
    const { rows } = await db.raw<{ rows: LineRow[] }>(`${LINE_SELECT} where s.subscription_id = ?`, [subscriptionId]);
    return rows[0];
  }

  /** Keyset paging by subscription_id. */
  async listLines(opts: { after?: string; limit: number; status?: LineStatusName }): Promise<LineRow[]> {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (opts.after !== undefined) {
      where.push("s.subscription_id > ?");
      args.push(opts.after);
    }
    if (opts.status) {
      where.push("s.status = ?");
      args.push(opts.status);
    }
    const { rows } = await this.knex.raw<{ rows: LineRow[] }>(
      `${LINE_SELECT} ${where.length ? `where ${where.join(" and ")}` : ""} order by s.subscription_id limit ?`,
      [...args, opts.limit],
    );
    return rows;
  }

  /** One page of the current quotas of the lines that are not terminated. */
  async quotaPage(after: string | undefined, limit: number): Promise<QuotaRow[]> {
    const { rows } = await this.knex.raw<{ rows: QuotaRow[] }>(
      `select s.subscription_id, sp.plan_id, p.quota_bytes, s.line_sequence,
              nx.quota_bytes as next_quota_bytes, nx.valid_from as next_from
         from domain.subscriptions s
         join domain.subscription_plan sp on sp.subscription_id = s.subscription_id and sp.valid @> now()
         join domain.plans p on p.plan_id = sp.plan_id
         left join lateral (
           select np.quota_bytes, lower(f.valid) as valid_from
             from domain.subscription_plan f join domain.plans np on np.plan_id = f.plan_id
            where f.subscription_id = s.subscription_id and lower(f.valid) > now()
            order by lower(f.valid) limit 1) nx on true
        where s.status <> 'terminated' and s.subscription_id > ?
        order by s.subscription_id limit ?`,
      [after ?? "", limit],
    );
    return rows;
  }

  async history(subscriptionId: string) {
    const periods = (table: string, column: string) =>
      this.knex.raw<{ rows: PeriodRow[] }>(
        `select ${column} as item_id, lower(valid) as valid_from, upper(valid) as valid_to from ${table}
          where subscription_id = ? order by lower(valid), id`,
        [subscriptionId],
      );
    const [plans, vas, discounts, statuses] = await Promise.all([
      periods("domain.subscription_plan", "plan_id"),
      periods(ADDONS.vas.table, ADDONS.vas.column),
      periods(ADDONS.discount.table, ADDONS.discount.column),
      this.knex.raw<{ rows: StatusRow[] }>(
        `select status, at, reason from domain.subscription_status_history where subscription_id = ? order by at, id`,
        [subscriptionId],
      ),
    ]);
    return { plans: plans.rows, vas: vas.rows, discounts: discounts.rows, statuses: statuses.rows };
  }

  async exists(subscriptionId: string): Promise<boolean> {
    return Boolean(await this.knex("domain.subscriptions").where({ subscription_id: subscriptionId }).first());
  }

  /** Writes who saw a line's number in clear, in the transaction that read it. */
  async auditReveal(trx: Knex.Transaction, actor: Principal, subscriptionId: string, reason: string): Promise<void> {
    await trx("domain.audit_log").insert({
      actor: actor.subject,
      role: actor.role,
      action: "reveal",
      target_type: "line",
      target_id: subscriptionId,
      reason,
    });
  }

  /** The line's row, locked until the transaction ends; NOT_FOUND when there is none. */
  private async lock(trx: Knex.Transaction, subscriptionId: string) {
    const row = await trx("domain.subscriptions")
      .select<{ subscription_id: string; customer_id: string; number_id: string; status: LineStatusName }[]>(
        "subscription_id",
        "customer_id",
        "number_id",
        "status",
      )
      .where({ subscription_id: subscriptionId })
      .forUpdate()
      .first();
    if (!row) throw notFound(`line ${subscriptionId}`);
    return row;
  }

  private async plan(trx: Knex.Transaction, planId: string) {
    const plan = await trx("domain.plans")
      .select<{ plan_id: string; quota_bytes: string; active: boolean }[]>("plan_id", "quota_bytes", "active")
      .where({ plan_id: planId })
      .first();
    if (!plan) throw notFound(`plan ${planId}`);
    return plan;
  }

  /**
   * The current time, read from the clock (not the transaction's start time, `now()`): called
   * after the line's row lock is held, it is later than anything an earlier holder of that lock
   * wrote, so a change never lands before one that committed while this transaction waited.
   */
  private async now(trx: Knex.Transaction): Promise<Date> {
    const { rows } = await trx.raw<{ rows: { now: Date }[] }>("select clock_timestamp() as now");
    return (rows[0] as { now: Date }).now;
  }

  async activate(
    trx: Knex.Transaction,
    customerId: string,
    planId: string,
    headers: Headers,
  ): Promise<{ subscriptionId: string; source: NumberSourceName }> {
    const customer = await trx("domain.customers").select("customer_id").where({ customer_id: customerId }).first();
    if (!customer) throw notFound(`customer ${customerId}`);
    const plan = await this.plan(trx, planId);
    if (!plan.active) throw failedPrecondition(`plan ${planId} is no longer offered`);
    const number = await takeNumber(trx, customerId);
    if (!number) throw new ConnectError("the number pool has no free number", Code.ResourceExhausted);
    const now = await this.now(trx);
    const [line] = (await trx("domain.subscriptions")
      .insert({ customer_id: customerId, number_id: number.numberId, status: "active", activated_at: now })
      .returning("subscription_id")) as { subscription_id: string }[];
    const subscriptionId = (line as { subscription_id: string }).subscription_id;
    await trx("domain.subscription_status_history").insert({
      subscription_id: subscriptionId,
      status: "active",
      at: now,
      reason: number.source === "returned" ? "activated with the customer's held number" : "activated",
    });
    await trx.raw(
      "insert into domain.subscription_plan (subscription_id, plan_id, valid) values (?, ?, tstzrange(?, null, '[)'))",
      [subscriptionId, planId, now],
    );
    await appendDomainEvent(
      trx,
      subscriptionId,
      now,
      {
        case: "lineActivated",
        value: { customerId, planId, quotaBytes: BigInt(plan.quota_bytes), activatedAt: timestampFromDate(now) },
      },
      headers,
    );
    await appendNotification(
      trx,
      create(NotificationRequestSchema, {
        requestId: `welcome:${subscriptionId}`,
        subscriptionId,
        kind: NotificationKind.WELCOME,
        requestedAt: timestampFromDate(now),
        detail: { case: "welcome", value: { planId, activatedAt: timestampFromDate(now) } },
      }),
      headers,
    );
    return { subscriptionId, source: number.source };
  }

  /**
   * Puts `newPlanId` in force from `timing` (now, or 00:00 of the next month's first day in
   * `timeZone`). Periods that start at or after that moment (a change not yet in force) are
   * replaced; the period that covers it is closed there, or reopened when it already has the
   * new plan (which is how a pending change is taken back).
   */
  async changePlan(
    trx: Knex.Transaction,
    subscriptionId: string,
    newPlanId: string,
    timing: "now" | "next_month",
    timeZone: string,
    headers: Headers,
  ): Promise<PeriodRow> {
    const line = await this.lock(trx, subscriptionId);
    if (line.status === "terminated") throw failedPrecondition(`line ${subscriptionId} is terminated`);
    const plan = await this.plan(trx, newPlanId);
    if (!plan.active) throw failedPrecondition(`plan ${newPlanId} is no longer offered`);
    // Read after the lock (see now()): a change committed while we waited is in force by then.
    const { rows: at } = await trx.raw<{ rows: { clock: Date; next_month: Date }[] }>(
      `select t as clock, (date_trunc('month', t at time zone ?) + interval '1 month') at time zone ? as next_month
         from (select clock_timestamp() as t) c`,
      [timeZone, timeZone],
    );
    const { clock, next_month: nextMonth } = at[0] as { clock: Date; next_month: Date };
    const effective = timing === "now" ? clock : nextMonth;
    // Only a pending NEXT_MONTH change may start after the clock, and it starts at the next
    // month's first instant. A later start before that is a period in force that this change
    // would erase (a clock that went back, or a racing writer): refuse rather than rewrite it.
    const { rows: latest } = await trx.raw<{ rows: { lo: Date | null }[] }>(
      "select max(lower(valid)) as lo from domain.subscription_plan where subscription_id = ? and lower(valid) < ?",
      [subscriptionId, nextMonth],
    );
    const inForceFrom = latest[0]?.lo ?? null;
    if (inForceFrom !== null && inForceFrom >= effective) {
      throw aborted(
        `line ${subscriptionId} has a plan period from ${inForceFrom.toISOString()}, not before this change's effective time ${effective.toISOString()}; retry`,
      );
    }
    const { rows: periods } = await trx.raw<{ rows: { id: string; plan_id: string; lo: Date; hi: Date | null }[] }>(
      `select id, plan_id, lower(valid) as lo, upper(valid) as hi from domain.subscription_plan
        where subscription_id = ? and (upper(valid) is null or upper(valid) >= ?) order by lower(valid)`,
      [subscriptionId, effective],
    );
    const covering = periods.find((p) => p.lo <= effective && (p.hi === null || p.hi > effective));
    const later = periods.filter((p) => p.lo > effective);
    if (covering?.plan_id === newPlanId && later.length === 0) {
      throw failedPrecondition(
        timing === "now"
          ? `line ${subscriptionId} is already on plan ${newPlanId}`
          : `line ${subscriptionId} is already on plan ${newPlanId} from ${effective.toISOString()}`,
      );
    }
    const oldPlanId = covering?.plan_id ?? periods.at(-1)?.plan_id ?? "";
    // Replace what would start at or after the effective time (a change not yet in force).
    await trx.raw("delete from domain.subscription_plan where subscription_id = ? and lower(valid) >= ?", [
      subscriptionId,
      effective,
    ]);
    const before = periods.find((p) => p.lo < effective && (p.hi === null || p.hi >= effective));
    let period: PeriodRow;
    if (before && before.plan_id === newPlanId) {
      await trx.raw("update domain.subscription_plan set valid = tstzrange(lower(valid), null, '[)') where id = ?", [
        before.id,
      ]);
      period = { item_id: newPlanId, valid_from: before.lo, valid_to: null };
    } else {
      if (before) {
        await trx.raw("update domain.subscription_plan set valid = tstzrange(lower(valid), ?, '[)') where id = ?", [
          effective,
          before.id,
        ]);
      }
      await trx.raw(
        "insert into domain.subscription_plan (subscription_id, plan_id, valid) values (?, ?, tstzrange(?, null, '[)'))",
        [subscriptionId, newPlanId, effective],
      );
      period = { item_id: newPlanId, valid_from: effective, valid_to: null };
    }
    await appendDomainEvent(
      trx,
      subscriptionId,
      await this.now(trx),
      {
        case: "planChanged",
        value: {
          oldPlanId,
          newPlanId,
          quotaBytes: BigInt(plan.quota_bytes),
          effectiveFrom: timestampFromDate(effective),
        },
      },
      headers,
    );
    return period;
  }

  async suspend(trx: Knex.Transaction, subscriptionId: string, reason: string, headers: Headers): Promise<void> {
    const line = await this.lock(trx, subscriptionId);
    if (line.status !== "active")
      throw failedPrecondition(`line ${subscriptionId} is ${line.status}; only an active line can be suspended`);
    const now = await this.setStatus(trx, subscriptionId, "suspended", reason);
    await appendDomainEvent(trx, subscriptionId, now, { case: "lineSuspended", value: { reason } }, headers);
  }

  async resume(trx: Knex.Transaction, subscriptionId: string, headers: Headers): Promise<void> {
    const line = await this.lock(trx, subscriptionId);
    if (line.status !== "suspended")
      throw failedPrecondition(`line ${subscriptionId} is ${line.status}; only a suspended line can be resumed`);
    const now = await this.setStatus(trx, subscriptionId, "active", "resumed");
    await appendDomainEvent(trx, subscriptionId, now, { case: "lineResumed", value: {} }, headers);
  }

  /** Ends the line: its open periods close now and its number is held for the customer. */
  async terminate(
    trx: Knex.Transaction,
    subscriptionId: string,
    retentionDays: number,
    headers: Headers,
  ): Promise<void> {
    const line = await this.lock(trx, subscriptionId);
    if (line.status === "terminated") throw failedPrecondition(`line ${subscriptionId} is already terminated`);
    const now = await this.setStatus(trx, subscriptionId, "terminated", "terminated");
    for (const table of ["domain.subscription_plan", ADDONS.vas.table, ADDONS.discount.table]) {
      await trx.raw(`delete from ${table} where subscription_id = ? and lower(valid) >= ?`, [subscriptionId, now]);
      await trx.raw(
        `update ${table} set valid = tstzrange(lower(valid), ?, '[)')
          where subscription_id = ? and (upper(valid) is null or upper(valid) > ?)`,
        [now, subscriptionId, now],
      );
    }
    await holdNumber(trx, line.number_id, line.customer_id, retentionDays);
    await appendDomainEvent(
      trx,
      subscriptionId,
      now,
      { case: "lineTerminated", value: { terminatedAt: timestampFromDate(now) } },
      headers,
    );
  }

  private async setStatus(
    trx: Knex.Transaction,
    subscriptionId: string,
    status: LineStatusName,
    reason: string,
  ): Promise<Date> {
    const now = await this.now(trx);
    await trx("domain.subscriptions")
      .where({ subscription_id: subscriptionId })
      .update({ status, terminated_at: status === "terminated" ? now : null, updated_at: now });
    await trx("domain.subscription_status_history").insert({
      subscription_id: subscriptionId,
      status,
      at: now,
      reason,
    });
    return now;
  }

  /** Opens a VAS or discount period from now; ALREADY_EXISTS when one is open. */
  async addonStart(
    trx: Knex.Transaction,
    kind: AddonKind,
    subscriptionId: string,
    itemId: string,
    headers: Headers,
  ): Promise<PeriodRow> {
    const a = ADDONS[kind];
    const line = await this.lock(trx, subscriptionId);
    if (line.status === "terminated") throw failedPrecondition(`line ${subscriptionId} is terminated`);
    const item = await trx(a.catalogue).select<{ active: boolean }[]>("active").where(a.column, itemId).first();
    if (!item) throw notFound(`${a.what} ${itemId}`);
    if (!item.active) throw failedPrecondition(`${a.what} ${itemId} is no longer offered`);
    const now = await this.now(trx);
    const { rows: open } = await trx.raw<{ rows: unknown[] }>(
      `select 1 from ${a.table} where subscription_id = ? and ${a.column} = ? and (upper(valid) is null or upper(valid) > ?)`,
      [subscriptionId, itemId, now],
    );
    if (open.length > 0)
      throw new ConnectError(`line ${subscriptionId} already has ${a.what} ${itemId}`, Code.AlreadyExists);
    await this.refuseBeforeLatest(trx, kind, subscriptionId, itemId, now);
    await trx.raw(
      `insert into ${a.table} (subscription_id, ${a.column}, valid) values (?, ?, tstzrange(?, null, '[)'))`,
      [subscriptionId, itemId, now],
    );
    await this.addonEvent(trx, kind, subscriptionId, itemId, true, now, headers);
    return { item_id: itemId, valid_from: now, valid_to: null };
  }

  /** Closes the open VAS or discount period now; FAILED_PRECONDITION when there is none. */
  async addonEnd(
    trx: Knex.Transaction,
    kind: AddonKind,
    subscriptionId: string,
    itemId: string,
    headers: Headers,
  ): Promise<PeriodRow> {
    const a = ADDONS[kind];
    await this.lock(trx, subscriptionId);
    const now = await this.now(trx);
    await this.refuseBeforeLatest(trx, kind, subscriptionId, itemId, now);
    const { rows } = await trx.raw<{ rows: { valid_from: Date }[] }>(
      `update ${a.table} set valid = tstzrange(lower(valid), ?, '[)')
        where subscription_id = ? and ${a.column} = ? and lower(valid) < ? and (upper(valid) is null or upper(valid) > ?)
        returning lower(valid) as valid_from`,
      [now, subscriptionId, itemId, now, now],
    );
    const closed = rows[0];
    if (!closed) throw failedPrecondition(`line ${subscriptionId} does not have ${a.what} ${itemId}`);
    await this.addonEvent(trx, kind, subscriptionId, itemId, false, now, headers);
    return { item_id: itemId, valid_from: closed.valid_from, valid_to: now };
  }

  /** ABORTED when `at` is not after the start of the item's latest period (it would rewrite history). */
  private async refuseBeforeLatest(
    trx: Knex.Transaction,
    kind: AddonKind,
    subscriptionId: string,
    itemId: string,
    at: Date,
  ): Promise<void> {
    const a = ADDONS[kind];
    const { rows } = await trx.raw<{ rows: { lo: Date | null }[] }>(
      `select max(lower(valid)) as lo from ${a.table} where subscription_id = ? and ${a.column} = ?`,
      [subscriptionId, itemId],
    );
    const lo = rows[0]?.lo ?? null;
    if (lo !== null && lo >= at) {
      throw aborted(
        `line ${subscriptionId} has a ${a.what} ${itemId} period from ${lo.toISOString()}, not before this change's time ${at.toISOString()}; retry`,
      );
    }
  }

  private async addonEvent(
    trx: Knex.Transaction,
    kind: AddonKind,
    subscriptionId: string,
    itemId: string,
    on: boolean,
    at: Date,
    headers: Headers,
  ): Promise<void> {
    const effectiveFrom = timestampFromDate(at);
    await appendDomainEvent(
      trx,
      subscriptionId,
      at,
      kind === "vas"
        ? { case: "vasChanged", value: { vasId: itemId, subscribed: on, effectiveFrom } }
        : { case: "discountChanged", value: { discountId: itemId, granted: on, effectiveFrom } },
      headers,
    );
  }
}
