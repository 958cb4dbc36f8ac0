import { fileURLToPath } from "node:url";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { bearer } from "./auth.js";

export const PROTO_ROOT = fileURLToPath(new URL("../../proto", import.meta.url));

/** The same server through every protocol a caller may use, as the given caller. */
export function transports(
  baseUrl: string,
  token?: string,
): Record<"grpc" | "connect-h1" | "connect-h2" | "grpc-web", Transport> {
  const interceptors = token ? [bearer(token)] : [];
  return {
    grpc: createGrpcTransport({ baseUrl, interceptors }),
    "connect-h1": createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors }),
    "connect-h2": createConnectTransport({ baseUrl, httpVersion: "2", interceptors }),
    "grpc-web": createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors }),
  };
}

export function clients<S extends DescService>(service: S, baseUrl: string, token?: string): [string, Client<S>][] {
  return Object.entries(transports(baseUrl, token)).map(([name, t]) => [name, createClient(service, t)]);
}

/** A Connect client over gRPC as the given caller. */
export function grpcClient<S extends DescService>(service: S, baseUrl: string, token?: string): Client<S> {
  return createClient(service, createGrpcTransport({ baseUrl, interceptors: token ? [bearer(token)] : [] }));
}

/**
 * A stock @grpc/grpc-js client built at run time from the .proto files with @grpc/proto-loader:
 * what a team outside this repository would do. Returns a promise-based unary caller.
 */
export function grpcJsClient(protoFile: string, serviceName: string, address: string, token?: string) {
  const def = protoLoader.loadSync(protoFile, {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  });
  const pkg = grpc.loadPackageDefinition(def);
  const Ctor = serviceName.split(".").reduce<unknown>((o, part) => (o as Record<string, unknown>)[part], pkg) as
    | grpc.ServiceClientConstructor
    | undefined;
  if (!Ctor) throw new Error(`${serviceName} not found in ${protoFile}`);
  const client = new Ctor(address, grpc.credentials.createInsecure());
  const call = <Res = Record<string, unknown>>(method: string, req: Record<string, unknown>) =>
    new Promise<Res>((resolve, reject) => {
      const fn = (client as unknown as Record<string, (...a: unknown[]) => void>)[method];
      if (!fn) return reject(new Error(`no method ${method}`));
      const md = new grpc.Metadata();
      if (token) md.set("authorization", `Bearer ${token}`);
      fn.call(client, req, md, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: Res) =>
        err ? reject(err) : resolve(res),
      );
    });
  return { call, close: () => client.close() };
}

export { grpc };
