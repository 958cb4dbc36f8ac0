import { Code, ConnectError, createContextKey, type HandlerContext } from "@connectrpc/connect";

/** What jose imports keys as (a WebCrypto key). */
type KeyLike = Awaited<ReturnType<typeof importSPKI>>;

import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import {
  calculateJwkThumbprint,
  exportJWK,
  importPKCS8,
  importSPKI,
  type JWK,
  type JWTPayload,
  jwtVerify,
  SignJWT,
} from "jose";

/**
 * Callers present a JWT (EdDSA, signed by the domain unit with AUTH_SIGNING_KEY); every unit
 * verifies it the same way with AUTH_VERIFY_KEY before the request body is read, then checks the
 * caller's role against the unit's policy for the method. Health and reflection stay open (probes,
 * grpcurl); so does the domain unit's Login. Inside the mesh Istio authorises who may call whom;
 * this decides what the end user (or a service token) may do.
 */

export const ROLES = ["admin", "operator", "viewer", "subscriber", "service"] as const;
export type RoleName = (typeof ROLES)[number];

export interface Principal {
  /** The token's subject: an operator id, a subscriber id, or a service name. Never personal data. */
  subject: string;
  role: RoleName;
  /** For subscribers: the lines they may see. */
  subscriptionIds: string[];
}

export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "authenticated caller" });

/** Method name (as in the proto, e.g. "GetLineUsage") → roles allowed to call it. */
export type Policy = Record<string, readonly RoleName[]>;

/** The `iss` and `aud` of every access token (the mesh's RequestAuthentication checks them too). */
export const ISSUER = "telco-domain";
export const AUDIENCE = "telco";
/** Where the domain unit publishes its public key as a JWK set (the ingress gateway fetches it). */
export const JWKS_PATH = "/.well-known/jwks.json";

/** Methods any caller may use without a token. */
const OPEN_SERVICES = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);
export const OPEN_METHODS = new Set(["telco.domain.v1.AuthService/Login"]);

export class TokenVerifier {
  private constructor(private readonly key: KeyLike) {}

  /** `publicKey`: an SPKI PEM, or that PEM base64-encoded (one line, for environment variables). */
  static async fromPublicKey(publicKey: string): Promise<TokenVerifier> {
    return new TokenVerifier(await importSPKI(pem(publicKey, "PUBLIC KEY"), "EdDSA"));
  }

  async verify(token: string): Promise<Principal> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.key, { issuer: ISSUER, audience: AUDIENCE, algorithms: ["EdDSA"] }));
    } catch (e) {
      const expired = (e as { code?: string }).code === "ERR_JWT_EXPIRED";
      throw new ConnectError(expired ? "access token expired" : "access token invalid", Code.Unauthenticated);
    }
    const role = payload.role;
    if (typeof payload.sub !== "string" || !ROLES.includes(role as RoleName)) {
      throw new ConnectError("access token has no valid subject or role", Code.Unauthenticated);
    }
    const lines = Array.isArray(payload.lines) ? payload.lines.filter((l): l is string => typeof l === "string") : [];
    return { subject: payload.sub, role: role as RoleName, subscriptionIds: lines };
  }
}

export class TokenSigner {
  private constructor(
    private readonly key: KeyLike,
    /** The public half as a JWK, with its RFC 7638 thumbprint as `kid`. */
    readonly publicJwk: JWK & { kid: string },
  ) {}

  /** `privateKey`: a PKCS#8 PEM, or that PEM base64-encoded. */
  static async fromPrivateKey(privateKey: string): Promise<TokenSigner> {
    const text = pem(privateKey, "PRIVATE KEY");
    const jwk = await exportJWK(createPublicKey(createPrivateKey(text)));
    const kid = await calculateJwkThumbprint(jwk);
    return new TokenSigner(await importPKCS8(text, "EdDSA"), { ...jwk, kid, alg: "EdDSA", use: "sig" });
  }

  /** The JWK set verifiers outside the process use (the Istio ingress gateway's RequestAuthentication). */
  jwks(): { keys: JWK[] } {
    return { keys: [this.publicJwk] };
  }

  async sign(p: Principal, ttlSeconds: number): Promise<{ token: string; expiresAt: Date }> {
    const expiresAt = new Date(Date.now() + ttlSeconds * 1000);
    const token = await new SignJWT({ role: p.role, lines: p.subscriptionIds })
      .setProtectedHeader({ alg: "EdDSA", kid: this.publicJwk.kid })
      .setSubject(p.subject)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
      .sign(this.key);
    return { token, expiresAt };
  }
}

/** A fresh Ed25519 key pair as base64-encoded PEMs (development keys, tests). */
export function generateAuthKeys(): { signingKey: string; verifyKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
  return {
    signingKey: b64(privateKey.export({ type: "pkcs8", format: "pem" }).toString()),
    verifyKey: b64(publicKey.export({ type: "spki", format: "pem" }).toString()),
  };
}

function pem(value: string, label: string): string {
  const v = value.trim();
  if (v.startsWith("-----BEGIN")) return v;
  const decoded = Buffer.from(v, "base64").toString("utf8");
  if (!decoded.includes(`-----BEGIN ${label}-----`))
    throw new Error(`not a ${label.toLowerCase()} PEM (or its base64)`);
  return decoded;
}

/**
 * The request gate of a unit's server: verifies the bearer token and the role before the body is
 * read, and leaves the caller in the handler context (`principalOf`).
 */
export function authGate(verifier: TokenVerifier, policy: Policy) {
  return async (ctx: HandlerContext): Promise<void> => {
    const service = ctx.service.typeName;
    if (OPEN_SERVICES.has(service) || OPEN_METHODS.has(`${service}/${ctx.method.name}`)) return;
    const header = ctx.requestHeader.get("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m?.[1])
      throw new ConnectError("missing access token: send `authorization: Bearer <token>`", Code.Unauthenticated);
    const principal = await verifier.verify(m[1]);
    const allowed = policy[ctx.method.name];
    if (!allowed?.includes(principal.role)) {
      throw new ConnectError(`role ${principal.role} may not call ${ctx.method.name}`, Code.PermissionDenied);
    }
    ctx.values.set(principalKey, principal);
  };
}

/** The caller; every non-open method has one (the gate refused the call otherwise). */
export function principalOf(ctx: HandlerContext): Principal {
  const p = ctx.values.get(principalKey);
  if (!p) throw new ConnectError("no authenticated caller", Code.Unauthenticated);
  return p;
}

/** Subscribers reach only their own lines; staff and services reach all. */
export function assertLineAccess(p: Principal, subscriptionId: string): void {
  if (p.role === "subscriber" && !p.subscriptionIds.includes(subscriptionId)) {
    throw new ConnectError(`line ${subscriptionId} is not one of the caller's lines`, Code.PermissionDenied);
  }
}

/** Who may see personal data in clear (each reveal is audited by the caller). */
export function mayReveal(p: Principal): boolean {
  return p.role === "admin" || p.role === "operator";
}

/** Roles groups for policies. */
export const STAFF: readonly RoleName[] = ["admin", "operator", "viewer"];
export const WRITERS: readonly RoleName[] = ["admin", "operator"];
export const EVERYONE: readonly RoleName[] = ["admin", "operator", "viewer", "subscriber", "service"];
