import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { TokenSigner } from "./auth.js";
import { ConfigError } from "./config.js";
import { clientTelemetry } from "./rpc-telemetry.js";

/** Lifetime of the service tokens a unit mints for its own calls; renewed a minute before expiry. */
const SERVICE_TOKEN_TTL_S = 600;

/**
 * Service tokens for one unit's calls to another: short-lived, role "service", subject the unit's
 * name, signed with SERVICE_SIGNING_KEY (whose public key the callee trusts as AUTH_VERIFY_KEY).
 * Which unit may call which RPC at all is the mesh's decision (Istio AuthorizationPolicy by
 * ServiceAccount principal); the token says what the caller is to the callee's method policy.
 */
export class ServiceTokens {
  private current: { token: string; expiresAt: number } | undefined;
  private pending: Promise<string> | undefined;

  private constructor(
    private readonly signer: TokenSigner,
    private readonly unit: string,
  ) {}

  static async create(signingKey: string, unit: string): Promise<ServiceTokens> {
    try {
      return new ServiceTokens(await TokenSigner.fromPrivateKey(signingKey), unit);
    } catch (e) {
      throw new ConfigError([`SERVICE_SIGNING_KEY is not usable: ${(e as Error).message}`]);
    }
  }

  async token(): Promise<string> {
    const c = this.current;
    if (c && c.expiresAt - Date.now() > 60_000) return c.token;
    this.pending ??= this.signer
      .sign({ subject: this.unit, role: "service", subscriptionIds: [] }, SERVICE_TOKEN_TTL_S)
      .then(({ token, expiresAt }) => {
        this.current = { token, expiresAt: expiresAt.getTime() };
        return token;
      })
      .finally(() => {
        this.pending = undefined;
      });
    return this.pending;
  }

  interceptor(): Interceptor {
    return (next) => async (req) => {
      req.header.set("authorization", `Bearer ${await this.token()}`);
      return next(req);
    };
  }
}

/**
 * A generated client of another unit over gRPC (h2c, or TLS for https URLs), as this unit; each
 * call is a client span and is counted in telco_rpc_client_*.
 */
export function unitClient<S extends DescService>(service: S, baseUrl: string, tokens: ServiceTokens): Client<S> {
  return createClient(service, createGrpcTransport({ baseUrl, interceptors: [clientTelemetry, tokens.interceptor()] }));
}
