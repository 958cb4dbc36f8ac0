import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import type { Knex } from "knex";
import type { RoleName } from "../../../kit/src/auth.js";

/** scrypt parameters: N=2^15 costs ≈ 50-100 ms per check here, slow enough to make guessing dear. */
const N = 32_768;
const R = 8;
const P = 1;
const KEY_LEN = 32;

function scryptAsync(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, KEY_LEN, { N: n, r, p, maxmem: 128 * n * r * 2 }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

/** "scrypt$N$r$p$salt$hash" with a fresh 16-byte salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scryptAsync(password, salt, N, R, P);
  return `scrypt$${N}$${R}$${P}$${salt.toString("base64")}$${hash.toString("base64")}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split("$");
  if (scheme !== "scrypt" || !n || !r || !p || !salt || !hash) return false;
  const expected = Buffer.from(hash, "base64");
  const actual = await scryptAsync(password, Buffer.from(salt, "base64"), Number(n), Number(r), Number(p));
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** A hash no password matches: checked when the user does not exist, so both cases take as long. */
const DUMMY = `scrypt$${N}$${R}$${P}$${randomBytes(16).toString("base64")}$${randomBytes(KEY_LEN).toString("base64")}`;

export interface OperatorRow {
  operator_id: string;
  username: string;
  role: RoleName;
  active: boolean;
}

export class OperatorStore {
  constructor(private readonly knex: Knex) {}

  /** Operators and subscribers together, as Login signs them in. */
  accounts(): AccountStore {
    return new AccountStore(this.knex);
  }

  async create(username: string, password: string, role: "admin" | "operator" | "viewer"): Promise<OperatorRow> {
    const hash = await hashPassword(password);
    return this.knex.transaction(async (trx) => {
      await lockName(trx, username);
      if (await trx("subscriber_accounts").where({ username }).first("account_id"))
        throw new Error(`user name ${username} is a subscriber's`);
      const [row] = await trx("operators")
        .insert({ username, password_hash: hash, role })
        .onConflict("username")
        .merge(["password_hash", "role", "active"])
        .returning<OperatorRow[]>(["operator_id", "username", "role", "active"]);
      if (!row) throw new Error("operator insert returned nothing");
      return row;
    });
  }

  /** The operator when the password matches an active account; undefined otherwise (same timing). */
  async authenticate(username: string, password: string): Promise<OperatorRow | undefined> {
    const row = await this.knex("operators")
      .select("operator_id", "username", "role", "active", "password_hash")
      .where({ username })
      .first<(OperatorRow & { password_hash: string }) | undefined>();
    const ok = await verifyPassword(password, row?.password_hash ?? DUMMY);
    return ok && row?.active
      ? { operator_id: row.operator_id, username: row.username, role: row.role, active: true }
      : undefined;
  }
}

/** Serialises account changes of one user name across operators and subscribers (until commit). */
async function lockName(trx: Knex.Transaction, username: string): Promise<void> {
  await trx.raw("select pg_advisory_xact_lock(hashtext('account:' || ?))", [username]);
}

/** Who signed in: an operator with their role, or a subscriber with their customer's lines. */
export type Account =
  | { kind: "operator"; id: string; role: "admin" | "operator" | "viewer" }
  | { kind: "subscriber"; id: string; subscriptionIds: string[] };

/** Subscribers' portal accounts (domain.subscriber_accounts), one password check per sign-in like operators'. */
export class AccountStore {
  constructor(private readonly knex: Knex) {}

  /** A subscriber account for a customer; refused for a user name an operator has. */
  async createSubscriber(username: string, password: string, customerId: string): Promise<string> {
    const hash = await hashPassword(password);
    return this.knex.transaction(async (trx) => {
      await lockName(trx, username);
      if (await trx("operators").where({ username }).first("operator_id"))
        throw new Error(`user name ${username} is an operator's`);
      const existing = await trx("subscriber_accounts")
        .where({ username })
        .first<{ customer_id: string } | undefined>("customer_id");
      if (existing && existing.customer_id !== customerId)
        throw new Error(`user name ${username} belongs to another customer's account`);
      // Again for the same customer: a new password, and the account active again.
      const [row] = await trx("subscriber_accounts")
        .insert({ username, password_hash: hash, customer_id: customerId })
        .onConflict("username")
        .merge(["password_hash", "active"])
        .returning<{ account_id: string }[]>(["account_id"]);
      if (!row) throw new Error("subscriber account insert returned nothing");
      return row.account_id;
    });
  }

  /** Signs a subscriber account out of every future sign-in; false when there is none. */
  async disableSubscriber(username: string): Promise<boolean> {
    return (await this.knex("subscriber_accounts").where({ username }).update({ active: false })) > 0;
  }

  /**
   * The account when the password matches an active one, operator or subscriber; undefined
   * otherwise. One lookup and one password check whatever the name, so that timing tells
   * nothing about which names exist.
   */
  async authenticate(username: string, password: string): Promise<Account | undefined> {
    const row = await this.knex
      .select("kind", "id", "role", "customer_id", "active", "password_hash")
      .from(
        this.knex.raw(
          `(select 'operator' as kind, operator_id as id, role, null::uuid as customer_id, active, password_hash
              from operators where username = ?
            union all
            select 'subscriber', account_id, 'subscriber', customer_id, active, password_hash
              from subscriber_accounts where username = ?) as accounts`,
          [username, username],
        ),
      )
      // Names are unique across both (lockName); were one in both, the operator's would win.
      .orderBy("kind")
      .first<
        | {
            kind: "operator" | "subscriber";
            id: string;
            role: string;
            customer_id: string | null;
            active: boolean;
            password_hash: string;
          }
        | undefined
      >();
    const ok = await verifyPassword(password, row?.password_hash ?? DUMMY);
    if (!ok || !row?.active) return undefined;
    if (row.kind === "operator")
      return { kind: "operator", id: row.id, role: row.role as "admin" | "operator" | "viewer" };
    const lines = await this.knex("subscriptions")
      .where({ customer_id: row.customer_id })
      .whereNot({ status: "terminated" })
      .orderBy("activated_at")
      .pluck<string[]>("subscription_id");
    return { kind: "subscriber", id: row.id, subscriptionIds: lines };
  }
}
