import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequest_FieldViolationSchema, BadRequestSchema } from "../../../gen/google/rpc/error_details_pb.js";

export interface FieldViolation {
  field: string;
  description: string;
}

/**
 * Collects every problem of a request before answering, so a caller learns all offending fields
 * at once: `INVALID_ARGUMENT` with a standard `google.rpc.BadRequest` detail (decoded by grpcurl,
 * grpc-js and Google's client libraries) and the field names in the message too.
 */
export class Violations {
  readonly list: FieldViolation[] = [];

  add(field: string, description: string): this {
    this.list.push({ field, description });
    return this;
  }

  /** Adds a violation when `ok` is false; returns `ok` so checks can be chained. */
  check(ok: boolean, field: string, description: string): boolean {
    if (!ok) this.add(field, description);
    return ok;
  }

  get empty(): boolean {
    return this.list.length === 0;
  }

  throwIfAny(): void {
    if (!this.empty) throw invalidArgument(this.list);
  }
}

export function invalidArgument(violations: FieldViolation[]): ConnectError {
  const summary = violations.map((v) => `${v.field}: ${v.description}`).join("; ");
  return new ConnectError(`invalid request: ${summary}`, Code.InvalidArgument, undefined, [
    {
      desc: BadRequestSchema,
      value: create(BadRequestSchema, {
        fieldViolations: violations.map((v) => create(BadRequest_FieldViolationSchema, v)),
      }),
    },
  ]);
}

/** The field violations carried by an error, for clients and tests. */
export function fieldViolations(err: unknown): FieldViolation[] {
  const ce = ConnectError.from(err);
  return ce
    .findDetails(BadRequestSchema)
    .flatMap((d) => d.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
}

export function notFound(what: string): ConnectError {
  return new ConnectError(`${what} not found`, Code.NotFound);
}

/** Common field checks. */
export const MONTH_RE = /^(\d{4})-(0[1-9]|1[0-2])$/;
export const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

/** Opaque page tokens: base64url JSON of the last key seen. A token that does not decode is the caller's error. */
export function encodePageToken(after: string | number): string {
  return Buffer.from(JSON.stringify({ a: after }), "utf8").toString("base64url");
}

export function decodePageToken(token: string, v: Violations, field = "page_token"): string | number | undefined {
  if (token === "") return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { a?: unknown };
    if (typeof parsed.a === "string" || typeof parsed.a === "number") return parsed.a;
  } catch {
    // fall through
  }
  v.add(field, "not a token returned by a previous call");
  return undefined;
}

/** page_size: 0 means the default; otherwise 1..max. */
export function pageSize(size: number, def: number, max: number, v: Violations, field = "page_size"): number {
  if (size === 0) return def;
  v.check(size >= 1 && size <= max, field, `must be between 1 and ${max} (0 = ${def})`);
  return Math.min(Math.max(size, 1), max);
}
