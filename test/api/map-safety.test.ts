import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  isMapSafeKey,
  isValidDomainName,
  isValidRelayHost,
  isValidSaslUsername,
} from '../../src/postfix/map-encoding.js';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { createRelay, createTenant } from '../helpers/fixtures.js';

let t: TestApp;
let admin: Awaited<ReturnType<typeof tokenFor>>;
let tenantId: string;
let relayId: string;
beforeAll(async () => {
  t = await createTestApp();
  admin = await tokenFor(t.app, ['admin']);
  tenantId = (await createTenant(t.app, admin.headers)).id;
  relayId = (await createRelay(t.app, admin.headers)).id;
});
afterAll(async () => t?.close());

/** Domain-like strings with the characters that break maps: whitespace, controls, `#`, `:`, quotes, Unicode. */
const nasty = fc.stringMatching(/^[a-zA-Z0-9.\-_ \t\n\r#:"'\\\u0000\u00e4\u00fc\u4e2d\u200b]{1,40}$/);
const domainish = fc.oneof(
  nasty,
  fc.domain(),
  fc.tuple(fc.domain(), nasty).map(([a, b]) => `${a}${b}`),
);

it('every domain name the API accepts is one the compiler can put in a map; the rest get a problem', async () => {
  await fc.assert(
    fc.asyncProperty(domainish, async (name) => {
      const response = await t.app.inject({
        method: 'POST',
        url: `/v1/tenants/${tenantId}/domains`,
        headers: admin.headers,
        payload: { name, relayId },
      });
      if (response.statusCode === 201) {
        const stored = response.json().name as string;
        expect(isValidDomainName(stored)).toBe(true);
        expect(isMapSafeKey(`@${stored}`)).toBe(true);
      } else {
        expect([400, 409]).toContain(response.statusCode);
        expect(response.headers['content-type']).toContain('application/problem+json');
      }
    }),
    { numRuns: 150 },
  );
});

it('every relay host and SASL username the API accepts is map-safe', async () => {
  await fc.assert(
    fc.asyncProperty(domainish, nasty, async (host, username) => {
      const relay = await t.app.inject({
        method: 'POST',
        url: '/v1/relays',
        headers: admin.headers,
        payload: { name: 'r', host, port: 587, tls: 'starttls' },
      });
      if (relay.statusCode === 201) expect(isValidRelayHost(relay.json().host)).toBe(true);
      else expect(relay.statusCode).toBe(400);
      const credential = await t.app.inject({
        method: 'POST',
        url: `/v1/relays/${relayId}/credentials`,
        headers: admin.headers,
        payload: { username, secret: 'x' },
      });
      if (credential.statusCode === 201) expect(isValidSaslUsername(credential.json().username)).toBe(true);
      else expect(credential.statusCode).toBe(400);
    }),
    { numRuns: 100 },
  );
});
