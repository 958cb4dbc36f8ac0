import type { DescService } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { useRef, useState } from "react";
import { BadRequestSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { Role } from "../../../gen/telco/domain/v1/auth_pb.js";

/** Who is signed in; kept for the browser tab only (sessionStorage), never in the URL. */
export interface Session {
  token: string;
  role: "admin" | "operator" | "viewer" | "subscriber";
  subscriptionIds: string[];
  expiresAt: number;
}

const ROLE_NAMES: Partial<Record<Role, Session["role"]>> = {
  [Role.ADMIN]: "admin",
  [Role.OPERATOR]: "operator",
  [Role.VIEWER]: "viewer",
  [Role.SUBSCRIBER]: "subscriber",
};
export const roleName = (r: Role) => ROLE_NAMES[r];

export function loadSession(): Session | undefined {
  try {
    const s = JSON.parse(sessionStorage.getItem("session") ?? "null") as Session | null;
    return s && s.expiresAt > Date.now() ? s : undefined;
  } catch {
    return undefined;
  }
}
export function saveSession(s: Session | undefined): void {
  if (s) sessionStorage.setItem("session", JSON.stringify(s));
  else sessionStorage.removeItem("session");
}

/** The staff who may reveal personal data (the domain unit checks it again, and audits it). */
export const mayReveal = (s: Session | undefined) => s?.role === "admin" || s?.role === "operator";
/** Staff who change things (lines, payments, templates, billing runs); viewers only read. */
export const mayWrite = mayReveal;

/** Clients of the units' generated contracts, over the Connect protocol, through the gateway (same origin). */
export function clientFor<S extends DescService>(service: S, session: Session | undefined): Client<S> {
  const bearer: Interceptor = (next) => (req) => {
    if (session) req.header.set("authorization", `Bearer ${session.token}`);
    return next(req);
  };
  return createClient(service, createConnectTransport({ baseUrl: window.location.origin, interceptors: [bearer] }));
}

/** A service's error as people read it: a sentence, and per field what is wrong with it. */
export interface Problem {
  message: string;
  fields: Record<string, string>;
  code: Code;
}

/** The service's own message (they are written for people), with the gRPC code's name for support. */
export function problemOf(err: unknown): Problem {
  const ce = ConnectError.from(err);
  const fields: Record<string, string> = {};
  for (const d of ce.findDetails(BadRequestSchema)) {
    for (const v of d.fieldViolations) fields[v.field] = v.description;
  }
  return { message: `${ce.rawMessage} (${Code[ce.code] ?? ce.code})`, fields, code: ce.code };
}

/**
 * One request id (or idempotency key) per intent: the same while the form says the same thing,
 * so a retry after a dropped answer replays the first attempt's answer instead of acting twice;
 * a new one when the form changes, and after a success (`next`).
 */
export function useRequestId(intent: string): [string, () => void] {
  const [state, setState] = useState(() => ({ intent, id: crypto.randomUUID() }));
  let current = state;
  if (state.intent !== intent) {
    current = { intent, id: crypto.randomUUID() };
    setState(current);
  }
  return [current.id, () => setState({ intent, id: crypto.randomUUID() })];
}

/** Tells whether a response is still the newest one asked for (older answers landing late are dropped). */
export function useLatest(): () => () => boolean {
  const seq = useRef(0);
  return () => {
    const n = ++seq.current;
    return () => n === seq.current;
  };
}

/** Bytes as people read them (GB with one decimal). */
export function bytes(n: bigint | number): string {
  const v = Number(n);
  if (v >= 1024 ** 3) return `${(v / 1024 ** 3).toFixed(1)} GB`;
  if (v >= 1024 ** 2) return `${(v / 1024 ** 2).toFixed(1)} MB`;
  if (v >= 1024) return `${(v / 1024).toFixed(1)} KB`;
  return `${v} B`;
}

/** "YYYY-MM" now in the carrier's time zone (Asia/Seoul). */
export function thisMonth(): string {
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone: "Asia/Seoul",
    year: "numeric",
    month: "2-digit",
  }).formatToParts(new Date());
  const part = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
  return `${part("year")}-${part("month")}`;
}
