/** `{{ name }}` placeholders; names are lower snake case. */
const PLACEHOLDER_RE = /\{\{\s*([^{}]*?)\s*\}\}/g;
export const VARIABLE_NAME_RE = /^[a-z][a-z0-9_]{0,63}$/;

export interface Placeholder {
  name: string;
  /** Offset in the text, for error messages. */
  at: number;
}

/** Every placeholder of a text, and the malformed ones (bad names, stray braces). */
export function scanPlaceholders(text: string): { found: Placeholder[]; malformed: string[] } {
  const found: Placeholder[] = [];
  const malformed: string[] = [];
  for (const m of text.matchAll(PLACEHOLDER_RE)) {
    const name = m[1] ?? "";
    if (VARIABLE_NAME_RE.test(name)) found.push({ name, at: m.index ?? 0 });
    else malformed.push(`"{{${name}}}" at offset ${m.index ?? 0} is not a valid variable name`);
  }
  const rest = text.replace(PLACEHOLDER_RE, "");
  const stray = rest.search(/\{\{|\}\}/);
  if (stray >= 0) malformed.push("unbalanced '{{' or '}}'");
  return { found, malformed };
}

/**
 * The text with each well-formed placeholder replaced by `value(name)`; the rest of the text is
 * left exactly as written. Callers validate with scanPlaceholders first (templates are checked
 * when saved).
 */
export function substitutePlaceholders(text: string, value: (name: string) => string): string {
  return text.replace(PLACEHOLDER_RE, (whole, name: string) => (VARIABLE_NAME_RE.test(name) ? value(name) : whole));
}
