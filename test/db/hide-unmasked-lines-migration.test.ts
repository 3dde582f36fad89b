/**
 * The migration that redacts what the pattern-based masking once stored in clear: lines of stored
 * secret files that are not `key user:sha:<hex>` lose their value, in chunks and in bundles stored
 * inline; masked lines, public files and everything else stay byte for byte.
 */
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MIGRATIONS_DIR, applyMigrations } from '../../src/db/migrate.js';

const SERVER_URL = process.env.DATABASE_URL || 'postgresql://postgres@127.0.0.1:5432/postgres';
const MIGRATION = 'hide_unmasked_secret_lines';
const HIDDEN = '(hidden: this line was stored unmasked by an earlier version)';

function urlFor(database: string): string {
  const url = new URL(SERVER_URL);
  url.pathname = `/${database}`;
  url.search = '';
  return url.toString();
}

describe(`the ${MIGRATION} migration`, () => {
  const admin = new pg.Client({ connectionString: SERVER_URL });
  const database = `rp_hide_${process.pid}_${randomBytes(4).toString('hex')}`;
  let before: string;
  let client: pg.Client;

  beforeAll(async () => {
    await admin.connect();
    await admin.query(`CREATE DATABASE "${database}"`);
    // Every migration before this one, then rows as the earlier version stored them.
    before = await mkdtemp(path.join(os.tmpdir(), 'rp-hide-'));
    await cp(DEFAULT_MIGRATIONS_DIR, before, { recursive: true });
    for (const name of await readdir(before))
      if (name.endsWith(`_${MIGRATION}`)) await rm(path.join(before, name), { recursive: true });
    await applyMigrations({ databaseUrl: urlFor(database), migrationsDir: before });
    client = new pg.Client({ connectionString: urlFor(database) });
    await client.connect();
  });

  afterAll(async () => {
    await client?.end();
    await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    await admin.end();
    if (before !== undefined) await rm(before, { recursive: true, force: true });
  });

  it('replaces every unmasked line of a stored secret file by its key, and nothing else', async () => {
    const masked = '@a.test user-a:sha:0123456789abcdef\n';
    const leaked = '@b.test user-b:pa\u2028ss\n';
    const chunks = {
      secret: { digest: 'a'.repeat(64), content: `${masked}${leaked}@c.test user-c:x\u2029y:z\n` },
      masked: { digest: 'b'.repeat(64), content: masked },
      public: { digest: 'c'.repeat(64), content: '@b.test [relay.test]:587\n@odd.test some:value\u2028here\n' },
    };
    for (const chunk of Object.values(chunks))
      await client.query('INSERT INTO config_chunks (digest, content) VALUES ($1, $2)', [chunk.digest, chunk.content]);
    const file = (secret: boolean, body: object) => ({
      mode: secret ? 0o600 : 0o644,
      secret,
      mapType: 'hash',
      ...body,
    });
    const chunked = {
      version: '1'.repeat(64),
      files: {
        sasl_passwd: file(true, { chunks: [chunks.secret.digest, chunks.masked.digest] }),
        sender_relay: file(false, { chunks: [chunks.public.digest] }),
      },
      mainCf: {},
      masterCf: [],
      warnings: [],
    };
    const inline = {
      version: '2'.repeat(64),
      files: {
        sasl_rp_x: file(true, { content: `[h.test]:465 u:sec\u2028ret\n${masked}` }),
        sender_relay: file(false, { content: 'x y\u2028z\n' }),
      },
      mainCf: { relayhost: '' },
      masterCf: [],
      warnings: [],
    };
    for (const bundle of [chunked, inline])
      await client.query('INSERT INTO config_bundles (version, bundle) VALUES ($1, $2)', [bundle.version, bundle]);

    await applyMigrations({ databaseUrl: urlFor(database) });

    const content = async (digest: string) =>
      (await client.query<{ content: string }>('SELECT content FROM config_chunks WHERE digest = $1', [digest])).rows[0]
        ?.content;
    expect(await content(chunks.secret.digest)).toBe(`${masked}@b.test ${HIDDEN}\n@c.test ${HIDDEN}\n`);
    expect(await content(chunks.masked.digest)).toBe(masked);
    expect(await content(chunks.public.digest)).toBe(chunks.public.content);
    const bundle = async (version: string) =>
      (await client.query<{ bundle: typeof inline }>('SELECT bundle FROM config_bundles WHERE version = $1', [version]))
        .rows[0]?.bundle;
    expect(await bundle(chunked.version)).toEqual(chunked);
    expect(await bundle(inline.version)).toEqual({
      ...inline,
      files: {
        ...inline.files,
        sasl_rp_x: { ...inline.files.sasl_rp_x, content: `[h.test]:465 ${HIDDEN}\n${masked}` },
      },
    });
  });
});
