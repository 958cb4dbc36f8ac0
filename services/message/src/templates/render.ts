/**
 * Rendering a template version with variable values: the one function previews and real sends
 * both use, so what an operator previews is what a subscriber gets.
 *
 * Errors are a RenderError listing every problem by variable name; messages never contain a
 * value (values are personal data: names, amounts, numbers).
 */
import type { TemplateVersionRow } from "../store/template-store.js";
import { substitutePlaceholders } from "./placeholders.js";

export type RenderProblemReason =
  /** A required variable without a value (absent, empty or only blanks). */
  | "missing"
  /** A value that is not of the variable's declared type. */
  | "type"
  /** A placeholder the version does not declare (only for rows saved without validation). */
  | "undeclared";

export interface RenderProblem {
  variable: string;
  reason: RenderProblemReason;
  description: string;
}

/** Why a version could not be rendered; `variable` is the first offending variable's name. */
export class RenderError extends Error {
  override readonly name = "RenderError";
  readonly variable: string;

  constructor(readonly problems: readonly [RenderProblem, ...RenderProblem[]]) {
    super(`cannot render: ${problems.map((p) => `${p.variable}: ${p.description}`).join("; ")}`);
    this.variable = problems[0].variable;
  }
}

export type RenderableVersion = Pick<TemplateVersionRow, "channel" | "subject" | "body" | "variables">;

export interface RenderOptions {
  /** Escape values for HTML in the body; default: e-mail templates. */
  html?: boolean;
}

export interface Rendered {
  subject: string;
  body: string;
}

const HTML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] as string);
}

/** 1234567 → "1,234,567"; exact for any integer (bigint). */
export function formatMoney(amount: bigint): string {
  const digits = (amount < 0n ? -amount : amount).toString();
  const grouped = digits.replace(/\B(?=(\d{3})+$)/g, ",");
  return amount < 0n ? `-${grouped}` : grouped;
}

const BYTE_UNITS = ["B", "KB", "MB", "GB", "TB", "PB", "EB"] as const;

/**
 * A byte count as people read it: "512 B", "1.5 GB", "110 GB", one decimal at most.
 *
 * Binary multiples (1 GB = 1024^3 bytes) under the everyday names, because that is how this
 * carrier's plans are sized: the catalog's "5G 스탠다드 110GB" has a quota of 110 × 1024^3 bytes,
 * and an alert must show "110 GB" for it, not "118.1 GB". Handsets' data counters do the same.
 */
export function formatBytes(bytes: bigint): string {
  if (bytes < 1024n) return `${bytes} B`;
  let unit = 0;
  while (unit < BYTE_UNITS.length - 1 && bytes >= 1024n ** BigInt(unit + 1)) unit++;
  // A double has ample precision for one decimal of a value below 1024.
  let shown = Math.round((Number(bytes) / Number(1024n ** BigInt(unit))) * 10) / 10;
  if (shown >= 1024 && unit < BYTE_UNITS.length - 1) {
    unit++;
    shown = Math.round((Number(bytes) / Number(1024n ** BigInt(unit))) * 10) / 10;
  }
  return `${Number.isInteger(shown) ? shown.toFixed(0) : shown.toFixed(1)} ${BYTE_UNITS[unit]}`;
}

const INTEGER_RE = /^[+-]?\d{1,30}$/;
const NUMBER_RE = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATETIME_RE = /^(\d{4})-(\d{2})-(\d{2})T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;

function isCalendarDate(y: string, m: string, d: string): boolean {
  const t = new Date(Date.UTC(Number(y), Number(m) - 1, Number(d)));
  return t.getUTCFullYear() === Number(y) && t.getUTCMonth() === Number(m) - 1 && t.getUTCDate() === Number(d);
}

/** The text a value of a declared type renders as, or the reason it is not of that type. */
export function formatValue(type: string, raw: string): { text: string } | { error: string } {
  const value = raw.trim();
  switch (type) {
    case "string":
      return { text: raw };
    case "number":
      // Shown as written (no float reformatting of e.g. "80.5"), once it is known to be a number.
      return NUMBER_RE.test(value) && Number.isFinite(Number(value))
        ? { text: value }
        : { error: "not a number (e.g. 80 or 12.5)" };
    case "date": {
      // A date, or an ISO 8601 date-time shown as the calendar date in its own offset (the date
      // the caller meant where it wrote the time).
      const m = DATE_RE.exec(value) ?? DATETIME_RE.exec(value);
      if (!m || !isCalendarDate(m[1] as string, m[2] as string, m[3] as string) || Number.isNaN(Date.parse(value))) {
        return { error: "not a date (YYYY-MM-DD or an ISO 8601 date-time)" };
      }
      return { text: value.slice(0, 10) };
    }
    case "money":
      // Integer minor units (KRW: whole won); the template writes the currency ("원").
      return INTEGER_RE.test(value) ? { text: formatMoney(BigInt(value)) } : { error: "not an integer amount" };
    case "bytes":
      return /^\+?\d{1,20}$/.test(value) && BigInt(value) <= 0xffff_ffff_ffff_ffffn
        ? { text: formatBytes(BigInt(value)) }
        : { error: "not a byte count (a non-negative integer)" };
    default:
      return { error: `declared with an unknown type "${type}"` };
  }
}

/**
 * Renders subject and body. Every declared variable is checked, used or not: a required one
 * needs a non-blank value, a given value must be of its type, an optional one without a value
 * renders as "". Values are escaped for HTML in an e-mail body (the template's own text is the
 * operator's HTML and stays as written); in the subject, a header, line breaks in values become
 * spaces so no value can start a header line of its own. Values for undeclared names are ignored.
 */
export function renderTemplate(
  version: RenderableVersion,
  values: Readonly<Record<string, string>>,
  opts: RenderOptions = {},
): Rendered {
  const html = opts.html ?? version.channel === "email";
  const problems: RenderProblem[] = [];
  const rendered = new Map<string, string>();
  for (const v of version.variables) {
    // Own properties only: a variable may well be called "constructor".
    const raw = Object.hasOwn(values, v.name) ? values[v.name] : undefined;
    if (raw === undefined || raw.trim() === "") {
      if (v.required) problems.push({ variable: v.name, reason: "missing", description: "required, no value given" });
      else rendered.set(v.name, "");
      continue;
    }
    const r = formatValue(v.type, raw);
    if ("error" in r) problems.push({ variable: v.name, reason: "type", description: `${r.error} (${v.type})` });
    else rendered.set(v.name, r.text);
  }

  const substitute = (text: string, encode: (s: string) => string) =>
    substitutePlaceholders(text, (name) => {
      const value = rendered.get(name);
      if (value !== undefined) return encode(value);
      if (!version.variables.some((v) => v.name === name) && !problems.some((p) => p.variable === name)) {
        problems.push({ variable: name, reason: "undeclared", description: "placeholder of no declared variable" });
      }
      return "";
    });
  const subject = substitute(version.subject, (s) => s.replace(/[\r\n]+/g, " "));
  const body = substitute(version.body, html ? escapeHtml : (s) => s);
  const [first, ...rest] = problems;
  if (first) throw new RenderError([first, ...rest]);
  return { subject, body };
}
