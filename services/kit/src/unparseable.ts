import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";

/**
 * connect-es answers a request body that is not Protobuf (random bytes, a truncated message) with
 * INTERNAL ("parse binary: …"), as grpc-go and grpc-java do. For this platform that is the
 * caller's mistake, not the unit's: it answers INVALID_ARGUMENT, naming the message it expected,
 * so that INTERNAL keeps meaning a fault of the unit (what alerts and dashboards count). Broken
 * JSON already gets INVALID_ARGUMENT from connect-es.
 *
 * Wraps each of a router's handlers (keeping their properties), rewriting only that one answer:
 * in gRPC's status (headers or trailers), in a Connect unary error body, and in a Connect
 * stream's end-stream message.
 */
export function invalidArgumentOnUnparseable(h: UniversalHandler): UniversalHandler {
  const expected = h.method.input.typeName;
  const wrapped = async (req: Parameters<UniversalHandler>[0]) => rewrite(await h(req), expected);
  return Object.assign(wrapped, h) as UniversalHandler;
}

const PARSE = "parse binary: ";
const why = (expected: string, message: string) =>
  `the request body is not a valid ${expected} (Protobuf binary): ${message.slice(PARSE.length)}`;

function rewriteGrpc(headers: Headers | undefined, expected: string): void {
  if (headers?.get("grpc-status") !== "13") return;
  const message = decodeURIComponent(headers.get("grpc-message") ?? "");
  if (!message.startsWith(PARSE)) return;
  headers.set("grpc-status", "3");
  headers.set("grpc-message", encodeURIComponent(why(expected, message)));
}

/** A Connect error JSON {"code":"internal","message":"parse binary: …"} as invalid_argument; else undefined. */
function rewriteJson(bytes: Uint8Array, expected: string, wrapper?: "error"): Uint8Array | undefined {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const e = (wrapper ? parsed[wrapper] : parsed) as { code?: unknown; message?: unknown } | undefined;
  if (e?.code !== "internal" || typeof e.message !== "string" || !e.message.startsWith(PARSE)) return undefined;
  e.code = "invalid_argument";
  e.message = why(expected, e.message);
  return new TextEncoder().encode(JSON.stringify(parsed));
}

async function rewrite(res: UniversalServerResponse, expected: string): Promise<UniversalServerResponse> {
  rewriteGrpc(res.header, expected);
  rewriteGrpc(res.trailer, expected);
  const type = res.header?.get("content-type") ?? "";
  const body = res.body;
  if (!body) return res;
  if (res.status === 500 && type.startsWith("application/json")) {
    const chunks: Uint8Array[] = [];
    for await (const c of body) chunks.push(c);
    const all = Buffer.concat(chunks);
    const fixed = rewriteJson(all, expected);
    if (!fixed) return { ...res, body: once(all) };
    res.header?.set("content-length", String(fixed.byteLength));
    return { ...res, status: 400, body: once(fixed) };
  }
  if (type.startsWith("application/connect+")) {
    return { ...res, body: endStreamRewritten(body, expected) };
  }
  return res;
}

async function* once(b: Uint8Array): AsyncIterable<Uint8Array> {
  yield b;
}

/** A Connect stream's chunks, its end-stream envelope (flag 0x02, JSON) rewritten when it is the parse error. */
async function* endStreamRewritten(body: AsyncIterable<Uint8Array>, expected: string): AsyncIterable<Uint8Array> {
  for await (const chunk of body) {
    if (chunk.byteLength >= 5 && (chunk[0] as number) & 0x02) {
      const len = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).readUInt32BE(1);
      if (len === chunk.byteLength - 5) {
        const fixed = rewriteJson(chunk.subarray(5), expected, "error");
        if (fixed) {
          const out = Buffer.alloc(5 + fixed.byteLength);
          out.writeUInt8(chunk[0] as number, 0);
          out.writeUInt32BE(fixed.byteLength, 1);
          out.set(fixed, 5);
          yield out;
          continue;
        }
      }
    }
    yield chunk;
  }
}
