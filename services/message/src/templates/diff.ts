/** Line diffs of template texts and the differences of two versions' variable declarations. */
import type { VariableJson } from "../store/template-store.js";

export type DiffOp = "same" | "added" | "removed";

export interface LineChange {
  op: DiffOp;
  text: string;
}

/**
 * Above this many cells (changed lines of one text × of the other, once the common head and tail
 * are set aside) the middle is reported as all removed then all added instead of being aligned:
 * still a correct diff, just not a minimal one, and memory stays bounded (4 MB) whatever is sent.
 */
const MAX_LCS_CELLS = 1_000_000;

/** An empty text has no lines (so two empty SMS subjects diff to nothing); "\r\n" counts as "\n". */
const linesOf = (text: string): string[] => (text === "" ? [] : text.split(/\r?\n/));

/**
 * A line diff by longest common subsequence: lines of `from` not kept are removed, lines of `to`
 * not kept are added; in each changed stretch the removals come before the additions.
 */
export function diffLines(from: string, to: string): LineChange[] {
  const a = linesOf(from);
  const b = linesOf(to);
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;

  const out: LineChange[] = a.slice(0, head).map((text) => ({ op: "same", text }));
  const am = a.slice(head, a.length - tail);
  const bm = b.slice(head, b.length - tail);
  const n = am.length;
  const m = bm.length;
  if (n * m > MAX_LCS_CELLS) {
    for (const text of am) out.push({ op: "removed", text });
    for (const text of bm) out.push({ op: "added", text });
  } else {
    // lcs[i * (m + 1) + j] = length of the LCS of am[i..] and bm[j..].
    const w = m + 1;
    const lcs = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i * w + j] =
          am[i] === bm[j]
            ? (lcs[(i + 1) * w + j + 1] as number) + 1
            : Math.max(lcs[(i + 1) * w + j] as number, lcs[i * w + j + 1] as number);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && am[i] === bm[j]) {
        out.push({ op: "same", text: am[i++] as string });
        j++;
      } else if (j >= m || (i < n && (lcs[(i + 1) * w + j] as number) >= (lcs[i * w + j + 1] as number))) {
        out.push({ op: "removed", text: am[i++] as string });
      } else {
        out.push({ op: "added", text: bm[j++] as string });
      }
    }
  }
  for (const text of a.slice(a.length - tail)) out.push({ op: "same", text });
  return out;
}

export interface VariableChanges {
  /** Only in `to`, in its declaration order. */
  added: string[];
  /** Only in `from`, in its declaration order. */
  removed: string[];
  /** In both but declared differently (type, required or example), in `to`'s order. */
  changed: string[];
}

export function diffVariables(from: readonly VariableJson[], to: readonly VariableJson[]): VariableChanges {
  const before = new Map(from.map((v) => [v.name, v]));
  const after = new Set(to.map((v) => v.name));
  const changes: VariableChanges = { added: [], removed: [], changed: [] };
  for (const v of to) {
    const old = before.get(v.name);
    if (!old) changes.added.push(v.name);
    else if (old.type !== v.type || old.required !== v.required || old.example !== v.example) {
      changes.changed.push(v.name);
    }
  }
  for (const v of from) if (!after.has(v.name)) changes.removed.push(v.name);
  return changes;
}
