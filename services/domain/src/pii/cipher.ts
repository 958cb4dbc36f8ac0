import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * Personal data at rest: AES-256-GCM (authenticated: a ciphertext altered by one bit is refused,
 * unlike the seed's AES-CBC without a MAC), a fresh random 96-bit IV per value, and the id of the
 * key that sealed it inside the value, so keys rotate without downtime: new values are sealed
 * with the active key, old ones still open with theirs until the re-encryption command moves them.
 *
 *   sealed = 0x01 | len(keyId) | keyId (ASCII) | iv (12) | tag (16) | ciphertext
 *
 * The associated data is the value's context (e.g. "customers.email"), so a ciphertext copied
 * into another column does not open there.
 *
 * Exact-match search goes through a blind index: HMAC-SHA256 under a separate key of the
 * normalised value. That key is not rotated with the encryption keys (rotating it means
 * recomputing every index column, which the re-encryption command can do as well).
 */

const VERSION = 0x01;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID_RE = /^[A-Za-z0-9._-]{1,32}$/;

export class PiiError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PiiError";
  }
}

export interface KeyRing {
  /** Key id → 32-byte AES key. */
  keys: Map<string, Buffer>;
  activeKeyId: string;
  /** 32-byte HMAC key of the blind indexes. */
  blindIndexKey: Buffer;
}

function key32(b64: string, what: string): Buffer {
  const k = Buffer.from(b64, "base64");
  if (k.length !== 32) throw new PiiError(`${what} must be 32 bytes, base64-encoded (got ${k.length} bytes)`);
  return k;
}

/**
 * Reads the key ring from settings: `keys` is "id:base64,id:base64" (32-byte keys), `active` the
 * id that seals new values, `blindIndexKey` a base64 32-byte key. Errors never contain key bytes.
 */
export function parseKeyRing(keys: string, active: string, blindIndexKey: string): KeyRing {
  const map = new Map<string, Buffer>();
  for (const part of keys
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    const i = part.indexOf(":");
    const id = i > 0 ? part.slice(0, i) : "";
    if (!KEY_ID_RE.test(id))
      throw new PiiError("each key must be written id:base64 with an id of 1-32 letters, digits, '.', '_' or '-'");
    if (map.has(id)) throw new PiiError(`key id ${id} appears twice`);
    map.set(id, key32(part.slice(i + 1), `key ${id}`));
  }
  if (map.size === 0) throw new PiiError("no encryption key given");
  if (!map.has(active))
    throw new PiiError(
      `the active key id ${JSON.stringify(active)} is not among the keys (${[...map.keys()].join(", ")})`,
    );
  return { keys: map, activeKeyId: active, blindIndexKey: key32(blindIndexKey, "the blind index key") };
}

/** A fresh key ring with random keys (tests, and the local development keys `npm start` writes). */
export function randomKeyRing(ids: string[] = ["k1"], active = ids[ids.length - 1] ?? "k1"): KeyRing {
  return {
    keys: new Map(ids.map((id) => [id, randomBytes(32)])),
    activeKeyId: active,
    blindIndexKey: randomBytes(32),
  };
}

export class PiiCipher {
  constructor(private readonly ring: KeyRing) {}

  get activeKeyId(): string {
    return this.ring.activeKeyId;
  }

  seal(plaintext: string, context: string): Buffer {
    const keyId = this.ring.activeKeyId;
    const key = this.ring.keys.get(keyId) as Buffer;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", key, iv);
    cipher.setAAD(Buffer.from(context, "utf8"));
    const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    const id = Buffer.from(keyId, "ascii");
    return Buffer.concat([Buffer.from([VERSION, id.length]), id, iv, cipher.getAuthTag(), body]);
  }

  /** Opens a sealed value; a tampered, truncated or foreign value is refused with PiiError. */
  open(sealed: Buffer, context: string): string {
    const { keyId, iv, tag, body } = this.parse(sealed);
    const key = this.ring.keys.get(keyId);
    if (!key) throw new PiiError(`sealed with key ${keyId}, which is not in the key ring`);
    const decipher = createDecipheriv("aes-256-gcm", key, iv);
    decipher.setAAD(Buffer.from(context, "utf8"));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(body), decipher.final()]).toString("utf8");
    } catch {
      throw new PiiError(`a ${context} value failed authentication: it was altered, or belongs elsewhere`);
    }
  }

  keyIdOf(sealed: Buffer): string {
    return this.parse(sealed).keyId;
  }

  /** Blind index of an already normalised value; `kind` separates e.g. phone from e-mail. */
  blindIndex(kind: string, normalised: string): Buffer {
    return createHmac("sha256", this.ring.blindIndexKey).update(`${kind}\u0000${normalised}`, "utf8").digest();
  }

  /** Constant-time comparison of two blind indexes. */
  static sameIndex(a: Buffer, b: Buffer): boolean {
    return a.length === b.length && timingSafeEqual(a, b);
  }

  private parse(sealed: Buffer) {
    if (sealed.length < 2 || sealed[0] !== VERSION) throw new PiiError("not a sealed value (unknown format version)");
    const idLen = sealed[1] as number;
    const start = 2 + idLen;
    if (sealed.length < start + IV_BYTES + TAG_BYTES) throw new PiiError("sealed value is truncated");
    return {
      keyId: sealed.subarray(2, start).toString("ascii"),
      iv: sealed.subarray(start, start + IV_BYTES),
      tag: sealed.subarray(start + IV_BYTES, start + IV_BYTES + TAG_BYTES),
      body: sealed.subarray(start + IV_BYTES + TAG_BYTES),
    };
  }
}
