import type { Interceptor } from "@connectrpc/connect";
import {
  generateAuthKeys,
  type Principal,
  type RoleName,
  TokenSigner,
  TokenVerifier,
} from "../../services/kit/src/auth.js";
import { TEST_PII_ENV } from "./keys.js";

/** Keys made for this test process: nothing signed with them is valid anywhere else. */
export const AUTH_KEYS = generateAuthKeys();
export const verifier = await TokenVerifier.fromPublicKey(AUTH_KEYS.verifyKey);
export const signer = await TokenSigner.fromPrivateKey(AUTH_KEYS.signingKey);

export async function tokenFor(
  role: RoleName,
  subscriptionIds: string[] = [],
  subject = `test-${role}`,
): Promise<string> {
  const p: Principal = { subject, role, subscriptionIds };
  return (await signer.sign(p, 3600)).token;
}

/** Adds `authorization: Bearer <token>` to every call of a Connect client. */
export function bearer(token: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

/** The env a unit process needs to verify the test tokens. */
export const AUTH_ENV = {
  AUTH_VERIFY_KEY: AUTH_KEYS.verifyKey,
  AUTH_SIGNING_KEY: AUTH_KEYS.signingKey,
  // Units sign their own calls to other units with it (the test verify key accepts them).
  SERVICE_SIGNING_KEY: AUTH_KEYS.signingKey,
  // The domain unit's personal-data keys: the test database's (support/keys.ts).
  ...TEST_PII_ENV,
};
