import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createSecretKey,
  hkdfSync,
  randomBytes,
} from 'node:crypto';

export interface SealedSecret {
  /** AES-256-GCM ciphertext followed by its 16-byte tag. */
  ciphertext: Buffer;
  nonce: Buffer;
  /** Identifies the master key that sealed it (a digest, never the key), for key rotation. */
  keyId: string;
}

/** What open() reads: a SealedSecret, or the same columns straight from a database row (no copies). */
export interface SealedBytes {
  ciphertext: Uint8Array;
  nonce: Uint8Array;
  keyId: string;
}

const TAG_BYTES = 16;

/**
 * Encrypts relay credential secrets at rest. Separate keys for encryption and fingerprints are
 * derived from the master key with HKDF; the row id is bound as associated data so a ciphertext
 * copied onto another row does not decrypt.
 */
export function createSecretBox(masterKey: Buffer) {
  if (masterKey.length !== 32) throw new Error('the master key must be 32 bytes');
  const encryptionKey = Buffer.from(
    hkdfSync('sha256', masterKey, Buffer.alloc(0), 'relayplane/credential-encryption/v1', 32),
  );
  // A KeyObject is not re-validated and copied on every call: opening 90,000 secrets per compile adds up.
  const cipherKey = createSecretKey(encryptionKey);
  const fingerprintKey = Buffer.from(
    hkdfSync('sha256', masterKey, Buffer.alloc(0), 'relayplane/credential-fingerprint/v1', 32),
  );
  const keyId = `mk1:${createHash('sha256').update(encryptionKey).digest('hex').slice(0, 16)}`;

  return {
    keyId,

    seal(plaintext: string, associatedData: string): SealedSecret {
      const nonce = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', cipherKey, nonce);
      cipher.setAAD(Buffer.from(associatedData, 'utf8'));
      const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
      return { ciphertext, nonce, keyId };
    },

    open(sealed: SealedBytes, associatedData: string): string {
      if (sealed.keyId !== keyId) {
        throw new Error(`secret was sealed with master key ${sealed.keyId}, but the configured key is ${keyId}`);
      }
      const body = sealed.ciphertext.subarray(0, sealed.ciphertext.length - TAG_BYTES);
      const tag = sealed.ciphertext.subarray(sealed.ciphertext.length - TAG_BYTES);
      const decipher = createDecipheriv('aes-256-gcm', cipherKey, sealed.nonce);
      decipher.setAAD(Buffer.from(associatedData, 'utf8'));
      decipher.setAuthTag(tag);
      const plaintext = decipher.update(body);
      // final() checks the tag; GCM is a stream mode, so it never returns bytes of its own.
      const rest = decipher.final();
      return (rest.length === 0 ? plaintext : Buffer.concat([plaintext, rest])).toString('utf8');
    },

    /** A short keyed digest: equal secrets match, and nothing about the secret can be learned from it. */
    fingerprint(plaintext: string): string {
      return createHmac('sha256', fingerprintKey).update(plaintext, 'utf8').digest('hex').slice(0, 16);
    },
  };
}

export type SecretBox = ReturnType<typeof createSecretBox>;
