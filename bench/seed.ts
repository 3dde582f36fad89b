/**
 * The 100,000-domain configuration of the compile and change-to-live benchmarks, written straight
 * into the tables: tenants of ten domains, 50 relays (every tenth implicit TLS), a credential for
 * nine domains in ten plus one relay-wide per relay, a few fallbacks and limits, 1,000
 * destination policies.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { createSecretBox } from '../src/lib/secret-box.js';

export const RELAYS = 50;
export const POLICIES = 1_000;
export const PER_TENANT = 10;

async function insert(client: pg.Client, table: string, columns: string[], rows: unknown[][]) {
  for (let offset = 0; offset < rows.length; offset += 1000) {
    const batch = rows.slice(offset, offset + 1000);
    const values = batch.map((row, i) => `(${row.map((_, j) => `$${i * row.length + j + 1}`).join(',')})`).join(',');
    await client.query(`INSERT INTO ${table} (${columns.join(',')}) VALUES ${values}`, batch.flat());
  }
}

/** Seeds `domains` sender domains (and their tenants, relays, credentials, policies) straight into the tables. */
export async function seed(url: string, masterKey: Buffer, count: number) {
  const box = createSecretBox(masterKey);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const now = new Date();
  const relays = Array.from({ length: RELAYS }, (_, i) => ({
    id: randomUUID(),
    row: [i % 10 === 0 ? 'implicit' : 'starttls', i % 10 === 0 ? 465 : 587, i % 7 === 0 ? 10 : null],
    i,
  }));
  await insert(
    client,
    'relays',
    ['id', 'name', 'host', 'port', 'tls', 'verify', 'concurrency', 'updated_at'],
    relays.map((relay) => [
      relay.id,
      `relay ${relay.i}`,
      `smtp${relay.i}.relay.example`,
      relay.row[1],
      relay.row[0],
      true,
      relay.row[2],
      now,
    ]),
  );
  const tenants = Array.from({ length: Math.ceil(count / PER_TENANT) }, (_, i) => [
    randomUUID(),
    `Tenant ${i}`,
    `tenant-${i}`,
    now,
  ]);
  await insert(client, 'tenants', ['id', 'name', 'slug', 'updated_at'], tenants);
  const domains: unknown[][] = [];
  const credentials: unknown[][] = [];
  for (let i = 0; i < count; i += 1) {
    const id = randomUUID();
    const relay = relays[i % RELAYS]!;
    // Realistic mix: almost all verified, a few with a fallback relay or limits of their own.
    const fallback = i % 500 === 0 ? relays[(i + 1) % RELAYS]!.id : null;
    const sameTls = fallback === null || relays[(i + 1) % RELAYS]!.row[0] === relay.row[0];
    domains.push([
      id,
      tenants[Math.floor(i / PER_TENANT)]![0],
      `d${i}.customer.example`,
      i % 20 === 0 ? 'pending' : 'verified',
      'relay',
      relay.id,
      sameTls ? fallback : null,
      i % 200 === 0 ? 2 : null,
      now,
    ]);
    if (i % 10 !== 9) {
      const credentialId = randomUUID();
      const secret = randomBytes(12).toString('base64url');
      const sealed = box.seal(secret, credentialId);
      credentials.push([
        credentialId,
        relay.id,
        id,
        `user${i}@d${i}.customer.example`,
        sealed.ciphertext,
        sealed.nonce,
        sealed.keyId,
        box.fingerprint(secret),
        'active',
        now,
      ]);
    }
  }
  await insert(
    client,
    'domains',
    ['id', 'tenant_id', 'name', 'status', 'route', 'relay_id', 'fallback_relay_id', 'concurrency', 'updated_at'],
    domains,
  );
  for (const relay of relays) {
    const credentialId = randomUUID();
    const sealed = box.seal('relay-wide-secret', credentialId);
    credentials.push([
      credentialId,
      relay.id,
      null,
      `platform-${relay.i}`,
      sealed.ciphertext,
      sealed.nonce,
      sealed.keyId,
      box.fingerprint('relay-wide-secret'),
      'active',
      now,
    ]);
  }
  await insert(
    client,
    'relay_credentials',
    [
      'id',
      'relay_id',
      'domain_id',
      'username',
      'secret_ciphertext',
      'secret_nonce',
      'secret_key_id',
      'fingerprint',
      'status',
      'updated_at',
    ],
    credentials,
  );
  await insert(
    client,
    'destination_policies',
    ['id', 'pattern', 'tls', 'updated_at'],
    Array.from({ length: POLICIES }, (_, i) => [
      randomUUID(),
      `${i % 2 === 0 ? '.' : ''}mx${i}.provider.example`,
      i % 3 === 0 ? 'verify' : 'encrypt',
      now,
    ]),
  );
  await client.end();
  return { credentials: credentials.length };
}
