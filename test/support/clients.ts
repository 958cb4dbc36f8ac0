import { fileURLToPath } from "node:url";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

export const PROTO_ROOT = fileURLToPath(new URL("../../proto", import.meta.url));

/** The same server through every protocol a caller may use. */
export function transports(baseUrl: string): Record<"grpc" | "connect-h1" | "connect-h2" | "grpc-web", Transport> {
  return {
    grpc: createGrpcTransport({ baseUrl }),
    "connect-h1": createConnectTransport({ baseUrl, httpVersion: "1.1" }),
    "connect-h2": createConnectTransport({ baseUrl, httpVersion: "2" }),
    "grpc-web": createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
  };
}

export function clients<S extends DescService>(service: S, baseUrl: string): [string, Client<S>][] {
  return Object.entries(transports(baseUrl)).map(([name, t]) => [name, createClient(service, t)]);
}

/**
 * A stock @grpc/grpc-js client built at run time from the .proto files with @grpc/proto-loader:
 * what a team outside this repository would do. Returns a promise-based unary caller.
 */
export function grpcJsClient(protoFile: string, serviceName: string, address: string) {
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
      fn.call(client, req, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: Res) =>
        err ? reject(err) : resolve(res),
      );
    });
  return { call, close: () => client.close() };
}

export { grpc };
