import { createHash } from "node:crypto";
import { clone, type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "knex";

/**
 * What makes two requests "the same request": SHA-256 over the caller's subject and the request's
 * canonical binary encoding with its request id cleared (unknown fields left out). A retry has the
 * same fingerprint; a different body, or another caller reusing the id, does not.
 */
export function requestFingerprint<Desc extends DescMessage>(
  schema: Desc,
  request: MessageShape<Desc>,
  subject: string,
): Buffer {
  const copy = clone(schema, request);
  const idField = schema.fields.find((f) => f.name === "request_id");
  if (idField) (copy as Record<string, unknown>)[idField.localName] = "";
  const body = toBinary(schema, copy, { writeUnknownFields: false });
  const who = Buffer.from(subject, "utf8");
  const whoLength = Buffer.alloc(4);
  whoLength.writeUInt32BE(who.length);
  return createHash("sha256").update(whoLength).update(who).update(body).digest();
}

/** The refusal for a request id that was already used for a different request. Names nothing of the first. */
export function reusedRequestId(requestId: string): ConnectError {
  return new ConnectError(`request_id ${requestId} was already used for a different request`, Code.AlreadyExists);
}

/**
 * Runs a mutating RPC at most once per (method, request_id), inside the caller's transaction:
 * the first answer is stored with the change it made and with the request's fingerprint (see
 * requestFingerprint), and replayed to every retry of the same request. The same id with a
 * different fingerprint is refused (ALREADY_EXISTS) and changes nothing. Keys stored before
 * fingerprints existed have none and are replayed as before. A transaction lock on the key makes a
 * concurrent duplicate wait for the first to commit (then replay its answer) instead of racing it.
 * Errors are not stored: a retry after a refusal is judged afresh.
 */
export async function once<Desc extends DescMessage>(
  trx: Knex.Transaction,
  method: string,
  requestId: string,
  fingerprint: Buffer,
  schema: Desc,
  run: () => Promise<MessageShape<Desc>>,
  replayUnfingerprinted = true,
): Promise<MessageShape<Desc>> {
  await trx.raw("select pg_advisory_xact_lock(hashtextextended(?, 0))", [`${method}/${requestId}`]);
  const seen = await trx("domain.idempotency_keys")
    .select<{ response: Buffer; fingerprint: Buffer | null }[]>("response", "fingerprint")
    .where({ method, request_id: requestId })
    .first();
  if (seen) {
    // A key stored before fingerprints existed cannot tell who sent it: replayed to staff and
    // services (who sent every such request), never to a subscriber.
    if (seen.fingerprint === null ? !replayUnfingerprinted : !seen.fingerprint.equals(fingerprint))
      throw reusedRequestId(requestId);
    return fromBinary(schema, seen.response);
  }
  const response = await run();
  await trx("domain.idempotency_keys").insert({
    method,
    request_id: requestId,
    fingerprint,
    response: Buffer.from(toBinary(schema, response)),
  });
  return response;
}
