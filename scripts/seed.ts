/**
 * Fills the domain schema with realistic Korean test data, fast: customers (names, 010 numbers,
 * e-mail addresses, birth dates — all sealed with the domain unit's keys, like the API does), lines
 * with their numbers (created here, status assigned), plan history (some lines changed plan in the
 * middle of last month), value-added services and discounts. Rows go in with COPY, one transaction
 * per batch, two batches in flight (one is generated while PostgreSQL loads the other).
 *
 *   npm run seed -- --lines 1000000            # add what is missing up to 1M seeded lines
 *   npm run seed -- --lines 1000000 --reset    # truncate customers, numbers, lines and history first
 *
 * Idempotent: each batch is one transaction and is recognised by its first customer's request id
 * ("seed:<index>"), so a rerun (or a run after a crash) adds only the batches that are missing.
 * Keys come from the environment (DOMAIN_PII_KEYS, DOMAIN_PII_ACTIVE_KEY, DOMAIN_BLIND_INDEX_KEY),
 * else from the development keys in ~/.config/telco-platform/dev-keys.env that `npm start` uses.
 */
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { PiiCipher, parseKeyRing } from "../services/domain/src/pii/cipher.js";
import { maskName } from "../services/domain/src/pii/normalise.js";
import { ZonedTime } from "../services/kit/src/zoned-time.js";
import { mulberry32 } from "./lib/random.js";
import { migrateAll } from "./migrate.js";

export interface SeedOptions {
  url: string;
  pii: PiiCipher;
  /** Seeded lines wanted in total (lines already seeded under the same tag count). */
  lines: number;
  /** Marks the seeded customers ("<tag>:<index>" request ids); reruns with the same tag resume. */
  tag?: string;
  /** Customers per batch (one transaction); ≈1.1 lines each. */
  batchCustomers?: number;
  /** Truncate customers, numbers, lines, their history and micro-payments first. */
  reset?: boolean;
  /** "Now" of the generated history (default: the clock); months are counted in timeZone. */
  now?: Date;
  timeZone?: string;
  log?: (line: string) => void;
}

export interface SeedResult {
  /** Lines and customers this run added. */
  lines: number;
  customers: number;
  seconds: number;
  databaseBytes: number;
}

// ---------------------------------------------------------------------------------------------
// Deterministic people: customer k is always the same person (tests regenerate them to look for
// their values in the tables).

/** Frequencies roughly as in the Korean census (per mille). */
const SURNAMES: [string, string, number][] = [
  ["김", "kim", 215],
  ["이", "lee", 147],
  ["박", "park", 84],
  ["최", "choi", 47],
  ["정", "jung", 44],
  ["강", "kang", 23],
  ["조", "cho", 21],
  ["윤", "yoon", 21],
  ["장", "jang", 20],
  ["임", "lim", 17],
  ["한", "han", 15],
  ["오", "oh", 15],
  ["서", "seo", 15],
  ["신", "shin", 15],
  ["권", "kwon", 14],
  ["황", "hwang", 14],
  ["안", "ahn", 14],
  ["송", "song", 13],
  ["전", "jeon", 13],
  ["홍", "hong", 11],
  ["유", "yoo", 11],
  ["고", "ko", 9],
  ["문", "moon", 9],
  ["양", "yang", 9],
  ["손", "son", 9],
  ["배", "bae", 8],
  ["백", "baek", 7],
  ["허", "heo", 6],
  ["남", "nam", 5],
  ["심", "shim", 5],
  ["노", "noh", 4],
  ["하", "ha", 4],
  ["곽", "kwak", 4],
  ["성", "sung", 4],
  ["차", "cha", 4],
  ["주", "joo", 4],
  ["우", "woo", 4],
  ["구", "koo", 4],
  ["민", "min", 3],
  ["남궁", "namgung", 1],
  ["제갈", "jegal", 1],
  ["황보", "hwangbo", 1],
];
const GIVEN: [string, string][] = [
  ["민", "min"],
  ["서", "seo"],
  ["준", "jun"],
  ["지", "ji"],
  ["현", "hyeon"],
  ["우", "woo"],
  ["예", "ye"],
  ["도", "do"],
  ["윤", "yun"],
  ["하", "ha"],
  ["은", "eun"],
  ["수", "su"],
  ["연", "yeon"],
  ["건", "geon"],
  ["유", "yu"],
  ["진", "jin"],
  ["영", "young"],
  ["성", "seong"],
  ["혜", "hye"],
  ["정", "jeong"],
  ["경", "kyung"],
  ["동", "dong"],
  ["재", "jae"],
  ["원", "won"],
  ["승", "seung"],
  ["희", "hee"],
  ["태", "tae"],
  ["호", "ho"],
  ["주", "ju"],
  ["아", "a"],
  ["채", "chae"],
  ["소", "so"],
  ["나", "na"],
  ["다", "da"],
  ["상", "sang"],
  ["철", "cheol"],
  ["미", "mi"],
  ["혁", "hyuk"],
  ["빈", "bin"],
  ["율", "yul"],
  ["인", "in"],
  ["석", "seok"],
  ["용", "yong"],
  ["훈", "hun"],
  ["규", "gyu"],
  ["린", "rin"],
  ["보", "bo"],
  ["람", "ram"],
  ["슬", "seul"],
  ["한", "han"],
];
const MAIL_DOMAINS: [string, number][] = [
  ["naver.com", 40],
  ["gmail.com", 30],
  ["daum.net", 12],
  ["kakao.com", 8],
  ["hanmail.net", 5],
  ["nate.com", 5],
];
/** Plans of the starting catalogue (migration 20261124000001) with their share of lines. */
const PLANS: [string, number][] = [
  ["5G-SLIM-8G", 15],
  ["5G-BASIC-24G", 20],
  ["5G-STD-110G", 25],
  ["5G-PREMIUM-UNL", 15],
  ["LTE-DATA-2G", 20],
  ["LTE-SENIOR-1G", 5],
];
const OPEN_VAS = ["RINGBACK", "CLOUD-50G", "SPAM-BLOCK"];

const rng = mulberry32;

function weighted<T>(r: number, items: [T, ...unknown[]][], weights: number[], total: number): T {
  let x = r * total;
  for (let i = 0; i < items.length; i++) {
    x -= weights[i] as number;
    if (x < 0) return (items[i] as [T])[0];
  }
  return (items[items.length - 1] as [T])[0];
}
const SURNAME_W = SURNAMES.map((s) => s[2]);
const ROMAN = new Map(SURNAMES.map(([s, rom]) => [s, rom]));
const SURNAME_T = SURNAME_W.reduce((a, b) => a + b, 0);
const MAIL_W = MAIL_DOMAINS.map((d) => d[1]);
const MAIL_T = MAIL_W.reduce((a, b) => a + b, 0);
const PLAN_W = PLANS.map((p) => p[1]);
const PLAN_T = PLAN_W.reduce((a, b) => a + b, 0);
const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;

/** Lines of customer k (0-based): every tenth customer has two. */
export const linesOf = (k: number) => (k % 10 === 9 ? 2 : 1);
/** Index (0-based) of customer k's first line. */
export const firstLineOf = (k: number) => k + Math.floor(k / 10);
/** Customers needed for n lines. */
export function customersFor(n: number): number {
  let k = Math.max(0, Math.floor((n * 10) / 11) - 2);
  while (firstLineOf(k) < n) k++;
  return k;
}

/**
 * The number of line i: a scramble of i into 010-5000-0000 … 010-9999-9999, distinct for the first
 * 50M lines (48271 is prime to 5·10^7), away from the pool ranges `npm run domain:numbers` adds.
 */
export function numberOfLine(i: number): string {
  const n = 50_000_000 + Number((BigInt(i) * 48_271n + 12_345_678n) % 50_000_000n);
  return `010${n}`;
}

export interface Person {
  name: string;
  email: string | undefined;
  birthDate: string;
  /** The contact phone: the number of the customer's first line. */
  phone: string;
}

export function personFor(k: number): Person {
  const r = rng(k * 2_654_435_761 + 97);
  const surname = weighted(r(), SURNAMES, SURNAME_W, SURNAME_T);
  const surRom = ROMAN.get(surname) as string;
  const g1 = pick(r, GIVEN);
  const g2 = pick(r, GIVEN);
  const single = r() < 0.03;
  const name = surname + g1[0] + (single ? "" : g2[0]);
  const givenRom = g1[1] + (single ? "" : g2[1]);
  const year = 1946 + Math.floor(r() * 61); // 19 to 80 years old
  const month = 1 + Math.floor(r() * 12);
  const day = 1 + Math.floor(r() * 28);
  const birthDate = `${year}-${String(month).padStart(2, "0")}-${String(day).padStart(2, "0")}`;
  const domain = weighted(r(), MAIL_DOMAINS, MAIL_W, MAIL_T);
  const style = r();
  const local =
    style < 0.4
      ? `${givenRom}${surRom}${year % 100}`
      : style < 0.7
        ? `${surRom}.${givenRom}${k % 1000}`
        : `${givenRom[0]}${surRom}${String(k).slice(-5)}`;
  const email = r() < 0.9 ? `${local}@${domain}` : undefined;
  return { name, email, birthDate, phone: numberOfLine(firstLineOf(k)) };
}

// ---------------------------------------------------------------------------------------------
// Time: months in the carrier's time zone.

function monthStarts(now: Date, timeZone: string) {
  const zone = new ZonedTime(timeZone);
  const { year: y, month: m } = zone.fields(now.getTime());
  const last = zone.fields(zone.instant(y, m - 1, 1));
  return {
    /** "YYYY-MM" of last month. */
    lastLabel: `${last.year}-${String(last.month).padStart(2, "0")}`,
    /** First instant of last month, of this month. */
    lastMonth: zone.instant(y, m - 1, 1),
    thisMonth: zone.instant(y, m, 1),
    dayOfLastMonth: (d: number) => zone.instant(y, m - 1, d),
  };
}

// ---------------------------------------------------------------------------------------------
// COPY text format.

const hex = (b: Buffer) => `\\\\x${b.toString("hex")}`;
const iso = (ms: number) => new Date(ms).toISOString();
const DAY = 86_400_000;
const MERCHANTS = ["APP-STORE", "GAME-CO", "WEBTOON", "MUSIC-STREAM", "TAXI-APP"];

interface Batch {
  index: number;
  firstCustomer: number;
  customers: number;
  lines: number;
}

interface Rows {
  customers: string[];
  numbers: string[];
  subscriptions: string[];
  statusHistory: string[];
  plans: string[];
  vas: string[];
  discounts: string[];
  payments: string[];
}

async function generate(
  b: Batch,
  totalLines: number,
  ids: { number: string; line: string }[],
  o: Required<Pick<SeedOptions, "pii" | "tag" | "timeZone">>,
  t: ReturnType<typeof monthStarts>,
  now: number,
): Promise<Rows> {
  const rows: Rows = {
    customers: [],
    numbers: [],
    subscriptions: [],
    statusHistory: [],
    plans: [],
    vas: [],
    discounts: [],
    payments: [],
  };
  const { pii } = o;
  const key = pii.activeKeyId;
  const threeYears = 3 * 365 * DAY;
  let next = 0;
  for (let k = b.firstCustomer; k < b.firstCustomer + b.customers; k++) {
    // Sealing is CPU-bound: yield now and then so the batch in flight keeps streaming to PostgreSQL.
    if (k % 200 === 0) await new Promise((resolve) => setImmediate(resolve));
    const p = personFor(k);
    const r = rng(k * 40_503 + 7);
    const customerId = randomUUID();
    const first = firstLineOf(k);
    const count = Math.min(linesOf(k), totalLines - first);
    let since = Number.POSITIVE_INFINITY;
    for (let j = 0; j < count; j++) {
      const lineIndex = first + j;
      const id = ids[next++] as { number: string; line: string };
      const digits = numberOfLine(lineIndex);
      rows.numbers.push(
        `${id.number}\t${hex(pii.seal(digits, "numbers.number"))}\t${hex(pii.blindIndex("number", digits))}\tassigned\t${key}\n`,
      );
      // Most lines are older than last month; some started in it (proration), a few this month.
      const kind = r();
      const activated =
        kind < 0.97
          ? t.lastMonth - DAY - Math.floor(r() * threeYears)
          : kind < 0.99
            ? t.dayOfLastMonth(2 + Math.floor(r() * 26)) + Math.floor(r() * DAY)
            : t.thisMonth + Math.floor(r() * Math.max(1, now - t.thisMonth));
      since = Math.min(since, activated);
      const suspended = r() < 0.02 && activated < t.lastMonth;
      rows.subscriptions.push(
        `${id.line}\t${customerId}\t${id.number}\t${suspended ? "suspended" : "active"}\t${iso(activated)}\t${iso(activated)}\t${iso(activated)}\n`,
      );
      rows.statusHistory.push(`${id.line}\tactive\t${iso(activated)}\tactivated\n`);
      if (suspended) {
        const at = activated + Math.floor(r() * (now - activated));
        rows.statusHistory.push(`${id.line}\tsuspended\t${iso(at)}\tunpaid\n`);
      }

      // Plan history: one open row; 8 % changed plan mid-month last month, 4 % some time before.
      const plan = weighted(r(), PLANS, PLAN_W, PLAN_T);
      const change = r();
      let changeAt: number | undefined;
      if (activated < t.lastMonth && change < 0.08) changeAt = t.dayOfLastMonth(5 + Math.floor(r() * 21));
      else if (activated < t.lastMonth - 30 * DAY && change < 0.12)
        changeAt = activated + DAY + Math.floor(r() * (t.lastMonth - activated - 2 * DAY));
      if (changeAt === undefined) {
        rows.plans.push(`${id.line}\t${plan}\t[${iso(activated)},)\n`);
      } else {
        let newer = weighted(r(), PLANS, PLAN_W, PLAN_T);
        if (newer === plan || newer === "LTE-SENIOR-1G")
          newer = plan === "5G-STD-110G" ? "5G-PREMIUM-UNL" : "5G-STD-110G";
        rows.plans.push(`${id.line}\t${plan}\t[${iso(activated)},${iso(changeAt)})\n`);
        rows.plans.push(`${id.line}\t${newer}\t[${iso(changeAt)},)\n`);
      }

      // VAS: a fifth subscribe one; some took a roaming pass for a week last month.
      if (r() < 0.2) rows.vas.push(`${id.line}\t${pick(r, OPEN_VAS)}\t[${iso(activated)},)\n`);
      if (activated < t.lastMonth && r() < 0.05) {
        const from = t.dayOfLastMonth(3 + Math.floor(r() * 15));
        rows.vas.push(`${id.line}\tROAMING-PASS\t[${iso(from)},${iso(from + 7 * DAY)})\n`);
      }
      // Discounts: contract discount for a third, family and welfare discounts for some.
      if (r() < 0.35) rows.discounts.push(`${id.line}\tCONTRACT-25\t[${iso(activated)},)\n`);
      if (r() < 0.1) rows.discounts.push(`${id.line}\tFAMILY-5500\t[${iso(activated)},)\n`);
      if (r() < 0.01) rows.discounts.push(`${id.line}\tWELFARE-11000\t[${iso(activated)},)\n`);
      // Micro-payments: a tenth of the lines paid 1-3 times last month (their own draws, so the
      // history above stays what earlier seeds made).
      const mr = rng(lineIndex * 7_919 + 13);
      if (activated < t.lastMonth && mr() < 0.1) {
        for (let n = 1 + Math.floor(mr() * 3), q = 0; q < n; q++) {
          const at = t.dayOfLastMonth(1 + Math.floor(mr() * 27)) + Math.floor(mr() * DAY);
          const amount = 1_000 + 100 * Math.floor(mr() * 300);
          rows.payments.push(
            `${id.line}\t${pick(mr, MERCHANTS)}\t${amount}\t${iso(at)}\t${t.lastLabel}\t${o.tag}:${id.line}:mp${q}\n`,
          );
        }
      }
    }
    const email = p.email
      ? `${hex(pii.seal(p.email, "customers.email"))}\t${hex(pii.blindIndex("email", p.email))}`
      : "\\N\t\\N";
    rows.customers.push(
      `${customerId}\t${hex(pii.seal(p.name, "customers.name"))}\t${maskName(p.name)}\t${hex(pii.seal(p.phone, "customers.phone"))}\t${hex(pii.blindIndex("phone", p.phone))}\t${email}\t${hex(pii.seal(p.birthDate, "customers.birth_date"))}\t${key}\t${o.tag}:${String(k).padStart(10, "0")}\t${iso(since)}\t${iso(since)}\n`,
    );
  }
  return rows;
}

const COPIES: [keyof Rows, string][] = [
  [
    "customers",
    "domain.customers (customer_id, name_sealed, name_masked, phone_sealed, phone_index, email_sealed, email_index, birth_date_sealed, key_id, create_request_id, created_at, updated_at)",
  ],
  ["numbers", "domain.numbers (number_id, number_sealed, number_index, status, key_id)"],
  [
    "subscriptions",
    "domain.subscriptions (subscription_id, customer_id, number_id, status, activated_at, created_at, updated_at)",
  ],
  ["statusHistory", "domain.subscription_status_history (subscription_id, status, at, reason)"],
  ["plans", "domain.subscription_plan (subscription_id, plan_id, valid)"],
  ["vas", "domain.subscription_vas (subscription_id, vas_id, valid)"],
  ["discounts", "domain.subscription_discount (subscription_id, discount_id, valid)"],
  ["payments", "domain.micro_payments (subscription_id, merchant, amount_krw, occurred_at, month, idempotency_key)"],
];

async function copy(client: pg.PoolClient, target: string, rows: string[]): Promise<void> {
  if (rows.length === 0) return;
  const stream = client.query(copyFrom(`copy ${target} from stdin`));
  await new Promise<void>((resolve, reject) => {
    stream.on("error", reject);
    stream.on("finish", resolve);
    // Large writes in one go: the stream buffers them and pg sends them as the socket drains.
    for (let i = 0; i < rows.length; i += 5_000) stream.write(rows.slice(i, i + 5_000).join(""));
    stream.end();
  });
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

export async function seed(o: SeedOptions): Promise<SeedResult> {
  const started = Date.now();
  const log = o.log ?? console.log;
  const tag = o.tag ?? "seed";
  const timeZone = o.timeZone ?? "Asia/Seoul";
  const batchCustomers = o.batchCustomers ?? 10_000;
  const now = (o.now ?? new Date()).getTime();
  const t = monthStarts(new Date(now), timeZone);
  const pool = new pg.Pool({ connectionString: o.url, max: 3, application_name: "seed" });
  try {
    if (o.reset) {
      log("[seed] --reset: truncating customers, numbers, lines, their history and micro-payments");
      await pool.query(`truncate domain.customers, domain.numbers, domain.subscriptions,
        domain.subscription_status_history, domain.subscription_plan, domain.subscription_vas,
        domain.subscription_discount, domain.micro_payments cascade;
        alter sequence domain.subscription_seq restart;
        select setval(pg_get_serial_sequence('domain.numbers', 'number_id'), 1, false)`);
    }
    const totalCustomers = customersFor(o.lines);
    const batches: Batch[] = [];
    for (let c = 0, i = 0; c < totalCustomers; c += batchCustomers, i++) {
      const n = Math.min(batchCustomers, totalCustomers - c);
      const lines = Math.min(firstLineOf(c + n - 1) + linesOf(c + n - 1), o.lines) - firstLineOf(c);
      batches.push({ index: i, firstCustomer: c, customers: n, lines });
    }
    const requestId = (k: number) => `${tag}:${String(k).padStart(10, "0")}`;
    const { rows: done } = await pool.query<{ create_request_id: string }>(
      "select create_request_id from domain.customers where create_request_id = any($1)",
      [batches.map((b) => requestId(b.firstCustomer))],
    );
    const doneSet = new Set(done.map((r) => r.create_request_id));
    const todo = batches.filter((b) => !doneSet.has(requestId(b.firstCustomer)));
    const todoLines = todo.reduce((s, b) => s + b.lines, 0);
    log(
      `[seed] ${fmt(o.lines)} lines for ${fmt(totalCustomers)} customers (tag ${tag}): ${fmt(o.lines - todoLines)} already there, adding ${fmt(todoLines)} in ${todo.length} batches`,
    );
    const seqs = await pool.query<{ n: string }>("select pg_get_serial_sequence('domain.numbers', 'number_id') as n");
    const numberSeq = seqs.rows[0]?.n as string;

    let linesDone = 0;
    let customersDone = 0;
    let rowsDone = 0;
    const loadStarted = Date.now();
    const inFlight = new Set<Promise<void>>();
    for (const b of todo) {
      // Sequence values are taken outside the batch's transaction: ids never collide with lines
      // the API creates meanwhile (a failed batch only leaves a gap).
      const { rows: ids } = await pool.query<{ number: string; line: string }>(
        `select nextval($1::regclass)::text as number,
                'L' || lpad(nextval('domain.subscription_seq')::text, 10, '0') as line
         from generate_series(1, $2)`,
        [numberSeq, b.lines],
      );
      const rows = await generate(b, o.lines, ids, { pii: o.pii, tag, timeZone }, t, now);
      const work = (async () => {
        const client = await pool.connect();
        try {
          await client.query("begin");
          for (const [name, target] of COPIES) await copy(client, target, rows[name]);
          await client.query("commit");
        } catch (e) {
          await client.query("rollback").catch(() => {});
          throw e;
        } finally {
          client.release();
        }
        linesDone += b.lines;
        customersDone += b.customers;
        rowsDone += Object.values(rows).reduce((n, r) => n + r.length, 0);
        const secs = (Date.now() - loadStarted) / 1000;
        const rate = linesDone / secs;
        log(
          `[seed] ${fmt(o.lines - todoLines + linesDone)}/${fmt(o.lines)} lines · ${fmt(rate)} lines/s · ${fmt(rowsDone / secs)} rows/s · ETA ${fmt((todoLines - linesDone) / rate)}s`,
        );
      })();
      inFlight.add(work);
      work.finally(() => inFlight.delete(work)).catch(() => {});
      // Two batches in flight: PostgreSQL loads one while this process generates and seals the next.
      if (inFlight.size >= 2) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    if (todo.length) {
      log("[seed] analyze");
      // Every table COPY filled: a table left out keeps the statistics of an empty one, and a
      // query over it then plans nested loops over a million rows.
      await pool.query(`analyze ${COPIES.map(([, target]) => target.split(" ")[0]).join(", ")}`);
    }
    const { rows: size } = await pool.query<{ bytes: string; pretty: string }>(
      "select pg_database_size(current_database()) as bytes, pg_size_pretty(pg_database_size(current_database())) as pretty",
    );
    const seconds = (Date.now() - started) / 1000;
    log(
      `[seed] done in ${seconds.toFixed(1)}s: added ${fmt(linesDone)} lines, ${fmt(customersDone)} customers; database ${size[0]?.pretty}`,
    );
    return { lines: linesDone, customers: customersDone, seconds, databaseBytes: Number(size[0]?.bytes) };
  } finally {
    await pool.end();
  }
}

/** Personal-data keys from the environment, else the development keys `npm start` uses. */
async function cipherFromEnv(): Promise<PiiCipher> {
  // @ts-expect-error: a plain .mjs helper shared with the start script
  const { devKeys } = await import("./lib/dev-keys.mjs");
  const env = { ...(devKeys(() => {}) as Record<string, string>), ...process.env };
  const { DOMAIN_PII_KEYS: keys, DOMAIN_PII_ACTIVE_KEY: active, DOMAIN_BLIND_INDEX_KEY: index } = env;
  if (!keys || !active || !index)
    throw new Error("no DOMAIN_PII_KEYS / DOMAIN_PII_ACTIVE_KEY / DOMAIN_BLIND_INDEX_KEY");
  return new PiiCipher(parseKeyRing(keys, active, index));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const USAGE = "usage: npm run seed -- --lines N [--reset] [--batch CUSTOMERS] [--tag NAME]";
  let values: { lines?: string; reset?: boolean; batch?: string; tag?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        lines: { type: "string" },
        reset: { type: "boolean" },
        batch: { type: "string" },
        tag: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    console.error(`seed: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const lines = Number(values.lines ?? "100000");
  const batch = Number(values.batch ?? "10000");
  if (!Number.isInteger(lines) || lines < 1 || lines > 50_000_000) {
    console.error(`seed: --lines must be a whole number from 1 to 50000000\n${USAGE}`);
    process.exit(2);
  }
  if (!Number.isInteger(batch) || batch < 100 || batch > 100_000) {
    console.error(`seed: --batch must be a whole number from 100 to 100000\n${USAGE}`);
    process.exit(2);
  }
  if (values.tag !== undefined && !/^[a-z][a-z0-9-]{0,31}$/.test(values.tag)) {
    console.error(`seed: --tag must be lower-case letters, digits or '-'\n${USAGE}`);
    process.exit(2);
  }
  const url = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/telco";
  try {
    await migrateAll(url, ["domain"], () => {});
    await seed({
      url,
      pii: await cipherFromEnv(),
      lines,
      batchCustomers: batch,
      reset: values.reset ?? false,
      tag: values.tag ?? "seed",
      timeZone: process.env.TIME_ZONE ?? "Asia/Seoul",
    });
  } catch (e) {
    // Never the URL (it may carry a password) and never a personal value: the message only.
    console.error(`seed failed: ${(e as Error).message}`);
    process.exit(1);
  }
}
