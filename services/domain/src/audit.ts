import type { Knex } from "knex";
import type { Principal } from "../../kit/src/auth.js";

/**
 * One entry of domain.audit_log: who (the token's subject and role, never a personal value) did
 * what to which record, and why. Written inside the caller's transaction, so an entry exists
 * exactly when the audited read or change happened.
 */
export interface AuditEntry {
  actor: Principal;
  action: "reveal";
  targetType: "customer";
  targetId: string;
  reason: string;
  requestId?: string;
}

export async function recordAudit(trx: Knex.Transaction, e: AuditEntry): Promise<void> {
  await trx("domain.audit_log").insert({
    actor: e.actor.subject,
    role: e.actor.role,
    action: e.action,
    target_type: e.targetType,
    target_id: e.targetId,
    reason: e.reason,
    request_id: e.requestId ?? "",
  });
}
