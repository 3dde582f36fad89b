import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { createRelay, createTenant } from '../helpers/fixtures.js';

type Admin = Awaited<ReturnType<typeof tokenFor>>;

interface Answer {
  status: number;
  body: string;
  retryAfter: string | null;
}

function tally(answers: Answer[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const answer of answers) counts[answer.status] = (counts[answer.status] ?? 0) + 1;
  return counts;
}

/**
 * A transaction on its own connection holding `LOCK TABLE … IN SHARE MODE`: inserts into the
 * table wait, so the first creates of a burst hold every pooled connection and the rest queue
 * for one, as they do when PostgreSQL is slow under load.
 */
async function lockTable(url: string, table: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query('BEGIN');
  await client.query(`LOCK TABLE ${table} IN SHARE MODE`);
  return async () => {
    await client.query('COMMIT');
    await client.end();
  };
}

describe('a burst of identical creates over real connections', () => {
  let t: TestApp;
  let admin: Admin;
  let base: string;
  beforeAll(async () => {
    t = await createTestApp();
    admin = await tokenFor(t.app, ['admin']);
    base = await t.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => t?.close());

  /**
   * 200 identical POSTs at once while `table` is locked; the lock is released once contention
   * shows (a transaction retried, or, without retries, a 5xx answered), then every answer is read.
   */
  async function burst(path: string, body: unknown, table: string): Promise<Answer[]> {
    const unlock = await lockTable(t.database.url, table);
    let stopListening = () => {};
    const contended = new Promise<void>((resolve) => {
      stopListening = t.onLog((line) => {
        if (line.includes('transaction retried after contention')) resolve();
      });
    });
    const answers = Array.from({ length: 200 }, async (): Promise<Answer> => {
      const response = await fetch(`${base}${path}`, {
        method: 'POST',
        headers: { ...admin.headers, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: response.status, body: await response.text(), retryAfter: response.headers.get('retry-after') };
    });
    const failed = Promise.race(
      answers.map((answer) => answer.then((a) => (a.status >= 500 ? undefined : new Promise<void>(() => {})))),
    );
    await Promise.race([contended, failed]);
    stopListening();
    await unlock();
    return Promise.all(answers);
  }

  it('creates one tenant and answers every other request 409, never 5xx', async () => {
    const answers = await burst('/v1/tenants', { name: 'Burst', slug: 'burst' }, 'tenants');
    expect(tally(answers), answers.find((a) => a.status >= 500)?.body).toEqual({ 201: 1, 409: 199 });
    expect(new Set(answers.filter((a) => a.status === 409).map((a) => JSON.parse(a.body).code))).toEqual(
      new Set(['tenant-slug-taken']),
    );
    expect(await t.prisma.tenant.count({ where: { slug: 'burst' } })).toBe(1);
  });

  it('creates one domain and answers every other request 409, never 5xx', async () => {
    const tenant = await createTenant(t.app, admin.headers);
    const relay = await createRelay(t.app, admin.headers);
    const answers = await burst(
      `/v1/tenants/${tenant.id}/domains`,
      { name: 'burst.example', relayId: relay.id },
      'domains',
    );
    expect(tally(answers), answers.find((a) => a.status >= 500)?.body).toEqual({ 201: 1, 409: 199 });
    expect(new Set(answers.filter((a) => a.status === 409).map((a) => JSON.parse(a.body).code))).toEqual(
      new Set(['domain-taken']),
    );
    expect(await t.prisma.domain.count({ where: { name: 'burst.example' } })).toBe(1);
  });

  it('creates one destination policy and answers every other request 409, never 5xx', async () => {
    const answers = await burst(
      '/v1/destination-policies',
      { pattern: 'burst.example', concurrency: 2 },
      'destination_policies',
    );
    expect(tally(answers), answers.find((a) => a.status >= 500)?.body).toEqual({ 201: 1, 409: 199 });
    expect(await t.prisma.destinationPolicy.count({ where: { pattern: 'burst.example' } })).toBe(1);
  });
});

describe('writes racing each other', () => {
  let t: TestApp;
  let admin: Admin;
  beforeAll(async () => {
    t = await createTestApp();
    admin = await tokenFor(t.app, ['admin']);
  });
  afterAll(async () => t?.close());

  it('applies every PATCH sent without If-Match, however they interleave (never 412)', async () => {
    const tenant = await createTenant(t.app, admin.headers);
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        t.app.inject({
          method: 'PATCH',
          url: `/v1/tenants/${tenant.id}`,
          headers: admin.headers,
          payload: { name: `Renamed ${i}` },
        }),
      ),
    );
    expect(tally(answers.map((a) => ({ status: a.statusCode, body: a.body, retryAfter: null })))).toEqual({ 200: 30 });
    const stored = await t.prisma.tenant.findUniqueOrThrow({ where: { id: tenant.id } });
    expect(stored.version).toBe(31);
  });

  it('applies every domain limits PUT sent without If-Match (never 412)', async () => {
    const tenant = await createTenant(t.app, admin.headers);
    const relay = await createRelay(t.app, admin.headers);
    const domain = (
      await t.app.inject({
        method: 'POST',
        url: `/v1/tenants/${tenant.id}/domains`,
        headers: admin.headers,
        payload: { name: 'limits-race.example', relayId: relay.id },
      })
    ).json<{ id: string }>();
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        t.app.inject({
          method: 'PUT',
          url: `/v1/domains/${domain.id}/limits`,
          headers: admin.headers,
          payload: { concurrency: i + 1 },
        }),
      ),
    );
    expect(answers.map((a) => a.statusCode).filter((status) => status !== 200)).toEqual([]);
    expect((await t.prisma.domain.findUniqueOrThrow({ where: { id: domain.id } })).version).toBe(21);
  });

  it('still refuses a stale If-Match with 412: one of the racers wins, the others are told', async () => {
    const tenant = await createTenant(t.app, admin.headers);
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        t.app.inject({
          method: 'PATCH',
          url: `/v1/tenants/${tenant.id}`,
          headers: { ...admin.headers, 'if-match': '"1"' },
          payload: { name: `Racer ${i}` },
        }),
      ),
    );
    expect(tally(answers.map((a) => ({ status: a.statusCode, body: a.body, retryAfter: null })))).toEqual({
      200: 1,
      412: 9,
    });
  });
});

describe('a database that keeps failing transactions for contention', () => {
  let t: TestApp;
  let admin: Admin;
  beforeAll(async () => {
    t = await createTestApp({ database: { transactionRetry: { attempts: 3, baseDelayMs: 5 } } });
    admin = await tokenFor(t.app, ['admin']);
  });
  afterAll(async () => t?.close());

  it('retries, then answers 503 unavailable with Retry-After, and stores nothing', async () => {
    // Every insert into tenants fails as a serialization failure would (SQLSTATE 40001).
    await t.prisma.$executeRawUnsafe(`CREATE FUNCTION always_serialization_failure() RETURNS trigger AS $$
      BEGIN RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; END $$ LANGUAGE plpgsql`);
    await t.prisma.$executeRawUnsafe(
      `CREATE TRIGGER tenants_contended BEFORE INSERT ON tenants FOR EACH ROW EXECUTE FUNCTION always_serialization_failure()`,
    );
    try {
      const response = await t.app.inject({
        method: 'POST',
        url: '/v1/tenants',
        headers: admin.headers,
        payload: { name: 'Contended', slug: 'contended' },
      });
      expect(response.statusCode, response.body).toBe(503);
      expect(response.headers['retry-after']).toBe('1');
      expect(response.headers['content-type']).toContain('application/problem+json');
      expect(response.json()).toMatchObject({
        type: 'urn:relayplane:problem:unavailable',
        code: 'unavailable',
        status: 503,
      });
      expect(response.body).not.toContain('serialize');
    } finally {
      await t.prisma.$executeRawUnsafe('DROP TRIGGER tenants_contended ON tenants');
    }
    expect(await t.prisma.tenant.count({ where: { slug: 'contended' } })).toBe(0);
    expect(
      t.logs.filter((line) => line.includes('transaction retried after contention') && line.includes('40001')),
    ).toHaveLength(2);
    const after = await t.app.inject({
      method: 'POST',
      url: '/v1/tenants',
      headers: admin.headers,
      payload: { name: 'Contended', slug: 'contended' },
    });
    expect(after.statusCode).toBe(201);
  });
});
