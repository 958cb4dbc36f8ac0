import { create, type DescFile, type DescMessage, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
  ServerReflectionResponseSchema,
  ServerReflection as ServerReflectionV1,
} from "../../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionV1Alpha,
  ServerReflectionRequestSchema as V1AlphaRequestSchema,
  ServerReflectionResponseSchema as V1AlphaResponseSchema,
} from "../../../gen/grpc/reflection/v1alpha/reflection_pb.js";

export { ServerReflectionV1, ServerReflectionV1Alpha };

const NOT_FOUND = 5;
const UNIMPLEMENTED = 12;
const INVALID_ARGUMENT = 3;

/**
 * An index of the descriptors embedded in the generated code (protoc-gen-es keeps each file's
 * FileDescriptorProto), answering the questions of gRPC server reflection: which services exist,
 * which file declares a symbol, a file by name with its imports.
 */
export class DescriptorIndex {
  readonly files = new Map<string, DescFile>();
  readonly symbols = new Map<string, DescFile>();
  /** Extendee full name → extension numbers and the files declaring them. */
  readonly extensions = new Map<string, Map<number, DescFile>>();
  readonly serviceNames: string[];
  private readonly bytes = new Map<string, Uint8Array>();

  /** `extraFiles`: files no service imports but clients need, e.g. the error detail types. */
  constructor(services: DescService[], extraFiles: DescFile[] = []) {
    this.serviceNames = services.map((s) => s.typeName).sort();
    for (const s of services) this.addFile(s.file);
    for (const f of extraFiles) this.addFile(f);
  }

  private addFile(file: DescFile): void {
    const name = file.proto.name;
    if (this.files.has(name)) return;
    this.files.set(name, file);
    for (const dep of file.dependencies) this.addFile(dep);
    const addMessage = (m: DescMessage) => {
      this.symbols.set(m.typeName, file);
      for (const f of m.fields) this.symbols.set(`${m.typeName}.${f.name}`, file);
      for (const o of m.oneofs) this.symbols.set(`${m.typeName}.${o.name}`, file);
      for (const n of m.nestedMessages) addMessage(n);
      for (const e of m.nestedEnums) this.symbols.set(e.typeName, file);
      for (const x of m.nestedExtensions) this.addExtension(x.extendee.typeName, x.number, x.typeName, file);
    };
    for (const m of file.messages) addMessage(m);
    for (const e of file.enums) this.symbols.set(e.typeName, file);
    for (const s of file.services) {
      this.symbols.set(s.typeName, file);
      for (const m of s.methods) this.symbols.set(`${s.typeName}.${m.name}`, file);
    }
    for (const x of file.extensions) this.addExtension(x.extendee.typeName, x.number, x.typeName, file);
  }

  private addExtension(extendee: string, number: number, typeName: string, file: DescFile): void {
    this.symbols.set(typeName, file);
    let byNumber = this.extensions.get(extendee);
    if (!byNumber) {
      byNumber = new Map();
      this.extensions.set(extendee, byNumber);
    }
    byNumber.set(number, file);
  }

  serialized(file: DescFile): Uint8Array {
    let b = this.bytes.get(file.proto.name);
    if (!b) {
      b = toBinary(FileDescriptorProtoSchema, file.proto);
      this.bytes.set(file.proto.name, b);
    }
    return b;
  }

  /** The file first, then its transitive imports that this stream has not been sent yet. */
  withDependencies(file: DescFile, alreadySent: Set<string>): Uint8Array[] {
    const out: Uint8Array[] = [this.serialized(file)];
    alreadySent.add(file.proto.name);
    const visit = (f: DescFile) => {
      for (const dep of f.dependencies) {
        if (alreadySent.has(dep.proto.name)) continue;
        alreadySent.add(dep.proto.name);
        out.push(this.serialized(dep));
        visit(dep);
      }
    };
    visit(file);
    return out;
  }
}

function answer(index: DescriptorIndex, req: ServerReflectionRequest, sent: Set<string>): ServerReflectionResponse {
  const base = { validHost: req.host, originalRequest: req };
  const error = (errorCode: number, errorMessage: string) =>
    create(ServerReflectionResponseSchema, {
      ...base,
      messageResponse: { case: "errorResponse", value: { errorCode, errorMessage } },
    });
  const files = (file: DescFile) =>
    create(ServerReflectionResponseSchema, {
      ...base,
      messageResponse: {
        case: "fileDescriptorResponse",
        value: { fileDescriptorProto: index.withDependencies(file, sent) },
      },
    });
  const r = req.messageRequest;
  switch (r.case) {
    case "listServices":
      return create(ServerReflectionResponseSchema, {
        ...base,
        messageResponse: {
          case: "listServicesResponse",
          value: { service: index.serviceNames.map((name) => ({ name })) },
        },
      });
    case "fileByFilename": {
      const file = index.files.get(r.value);
      return file ? files(file) : error(NOT_FOUND, `file not found: ${r.value}`);
    }
    case "fileContainingSymbol": {
      const file = index.symbols.get(r.value.replace(/^\./, ""));
      return file ? files(file) : error(NOT_FOUND, `symbol not found: ${r.value}`);
    }
    case "fileContainingExtension": {
      const file = index.extensions.get(r.value.containingType)?.get(r.value.extensionNumber);
      return file
        ? files(file)
        : error(NOT_FOUND, `extension ${r.value.extensionNumber} of ${r.value.containingType} not found`);
    }
    case "allExtensionNumbersOfType": {
      if (!index.symbols.has(r.value)) return error(NOT_FOUND, `type not found: ${r.value}`);
      return create(ServerReflectionResponseSchema, {
        ...base,
        messageResponse: {
          case: "allExtensionNumbersResponse",
          value: { baseTypeName: r.value, extensionNumber: [...(index.extensions.get(r.value)?.keys() ?? [])] },
        },
      });
    }
    case undefined:
      return error(INVALID_ARGUMENT, "empty reflection request: set one of the message_request fields");
    default:
      return error(UNIMPLEMENTED, "unsupported reflection request");
  }
}

/** grpc.reflection.v1.ServerReflection over the given services' descriptors. */
export function reflectionV1(index: DescriptorIndex): ServiceImpl<typeof ServerReflectionV1> {
  return {
    async *serverReflectionInfo(requests) {
      const sent = new Set<string>();
      for await (const req of requests) yield answer(index, req, sent);
    },
  };
}

/** v1alpha has the same wire format under another package: translate bytes, answer as v1. */
export function reflectionV1Alpha(index: DescriptorIndex): ServiceImpl<typeof ServerReflectionV1Alpha> {
  return {
    async *serverReflectionInfo(requests) {
      const sent = new Set<string>();
      for await (const req of requests) {
        const v1 = fromBinary(ServerReflectionRequestSchema, toBinary(V1AlphaRequestSchema, req));
        yield fromBinary(V1AlphaResponseSchema, toBinary(ServerReflectionResponseSchema, answer(index, v1, sent)));
      }
    },
  };
}
