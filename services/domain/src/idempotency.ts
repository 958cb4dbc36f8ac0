import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import type { Knex } from "knex";

/**
 * Runs a mutating RPC at most once per (method, request_id), inside the caller's transaction:
 * the first answer is stored with the change it made and replayed to every retry. A transaction
 * lock on the key makes a concurrent duplicate wait for the first to commit (then replay its
 * answer) instead of racing it. Errors are not stored: a retry after a refusal is judged afresh.
 */
export async function once<Desc extends DescMessage>(
  trx: Knex.Transaction,
  method: string,
  requestId: string,
  schema: Desc,
  run: () => Promise<MessageShape<Desc>>,
): Promise<MessageShape<Desc>> {
  await trx.raw("select pg_advisory_xact_lock(hashtextextended(?, 0))", [`${method}/${requestId}`]);
  const seen = await trx("domain.idempotency_keys")
    .select<{ response: Buffer }[]>("response")
    .where({ method, request_id: requestId })
    .first();
  if (seen) return fromBinary(schema, seen.response);
  const response = await run();
  await trx("domain.idempotency_keys").insert({
    method,
    request_id: requestId,
    response: Buffer.from(toBinary(schema, response)),
  });
  return response;
}
