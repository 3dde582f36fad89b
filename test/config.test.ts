import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

describe('loadConfig', () => {
  it('applies the documented defaults: embedded database on 127.0.0.1:8080', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      isEmbeddedDatabase: true,
      host: '127.0.0.1',
      port: 8080,
      logLevel: 'info',
      tokenTtlSeconds: 900,
      migrateOnStart: true,
    });
    expect(config.dataDir.endsWith('.relayplane')).toBe(true);
  });

  it('has sync worker defaults and resolves the SSH key path without reading it', () => {
    expect(loadConfig({})).toMatchObject({
      sshPrivateKeyPath: undefined,
      syncIntervalSeconds: 60,
      syncDebounceMs: 500,
      deployConcurrency: 4,
    });
    const config = loadConfig({
      RELAYPLANE_SSH_PRIVATE_KEY_PATH: 'keys/id_ed25519',
      RELAYPLANE_SYNC_INTERVAL_SECONDS: '30',
      RELAYPLANE_DEPLOY_CONCURRENCY: '8',
    });
    expect(config.sshPrivateKeyPath).toBe(path.resolve('keys/id_ed25519'));
    expect(config).toMatchObject({ syncIntervalSeconds: 30, deployConcurrency: 8 });
    // SSH connections kept for the next deploy: 30 s by default, 0 turns reuse off.
    expect(loadConfig({}).sshIdleSeconds).toBe(30);
    expect(loadConfig({ RELAYPLANE_SSH_IDLE_SECONDS: '0' }).sshIdleSeconds).toBe(0);
    expect(loadConfig({}).configBundleRetentionDays).toBe(30);
    // The nodes' CA file for credential tests: unset means the system store.
    expect(loadConfig({}).tlsCaFile).toBeUndefined();
    expect(loadConfig({ RELAYPLANE_TLS_CA_FILE: 'certs/node-ca.pem' }).tlsCaFile).toBe(
      path.resolve('certs/node-ca.pem'),
    );
    expect(loadConfig({ RELAYPLANE_CONFIG_BUNDLE_RETENTION_DAYS: '7' }).configBundleRetentionDays).toBe(7);
    expect(loadConfig({}).dnsUncheckableLimitSeconds).toBe(259200);
    expect(loadConfig({ RELAYPLANE_DNS_UNCHECKABLE_LIMIT_SECONDS: '3600' }).dnsUncheckableLimitSeconds).toBe(3600);
    expect(loadConfig({}).dnsVerifyCooldownSeconds).toBe(30);
    expect(loadConfig({ RELAYPLANE_DNS_VERIFY_COOLDOWN_SECONDS: '0' }).dnsVerifyCooldownSeconds).toBe(0);
    expect(loadConfig({}).dmarcReportAddress).toBeNull();
    expect(loadConfig({ RELAYPLANE_DMARC_REPORT_ADDRESS: ' mailto:dmarc@reports.example ' }).dmarcReportAddress).toBe(
      'dmarc@reports.example',
    );
    // It goes into rua=mailto:…: a comma, semicolon or "!" would change the record.
    for (const bad of [
      'dmarc@reports.example,x@y.example',
      'a;b@reports.example',
      'dmarc@reports.example!10m',
      'not-an-address',
    ]) {
      expect(() => loadConfig({ RELAYPLANE_DMARC_REPORT_ADDRESS: bad })).toThrow(/RELAYPLANE_DMARC_REPORT_ADDRESS/);
    }
  });

  it('limits token exchanges per address and per key id, and trusts no proxy, unless told', () => {
    expect(loadConfig({})).toMatchObject({
      tokenRateLimit: { perAddress: 30, perKeyId: 5, windowSeconds: 60 },
      trustProxy: undefined,
    });
    const config = loadConfig({
      RELAYPLANE_TOKEN_RATE_LIMIT_PER_ADDRESS: '100',
      RELAYPLANE_TOKEN_RATE_LIMIT_PER_KEY: '10',
      RELAYPLANE_TOKEN_RATE_LIMIT_WINDOW_SECONDS: '300',
      RELAYPLANE_TRUST_PROXY: '10.0.0.5, 192.168.0.0/16,loopback,fd00::/8',
    });
    expect(config).toMatchObject({ tokenRateLimit: { perAddress: 100, perKeyId: 10, windowSeconds: 300 } });
    expect(config.trustProxy).toEqual(['10.0.0.5', '192.168.0.0/16', 'loopback', 'fd00::/8']);
  });

  it('derives external mode from DATABASE_URL and decodes the master key', () => {
    const key = Buffer.alloc(32, 7).toString('base64');
    const config = loadConfig({ DATABASE_URL: 'postgresql://u@db/relayplane', RELAYPLANE_MASTER_KEY: key });
    expect(config.isEmbeddedDatabase).toBe(false);
    expect(config.masterKey?.equals(Buffer.alloc(32, 7))).toBe(true);
  });

  it.each([
    [
      { RELAYPLANE_PORT: 'eighty' },
      /^Invalid configuration: RELAYPLANE_PORT must be an integer between 0 and 65535 \(got "eighty"\)$/,
    ],
    [{ RELAYPLANE_PORT: '70000' }, /RELAYPLANE_PORT/],
    [{ RELAYPLANE_MASTER_KEY: 'c2hvcnQ=' }, /^Invalid configuration: RELAYPLANE_MASTER_KEY must be 32 random bytes/],
    [
      { RELAYPLANE_JWT_SECRET: 'short' },
      /^Invalid configuration: RELAYPLANE_JWT_SECRET must be at least 32 characters$/,
    ],
    [{ DATABASE_URL: 'mysql://x' }, /^Invalid configuration: DATABASE_URL must be a postgresql:\/\/ URL$/],
    [{ RELAYPLANE_LOG_LEVEL: 'loud' }, /RELAYPLANE_LOG_LEVEL/],
    [{ RELAYPLANE_MIGRATE_ON_START: 'maybe' }, /RELAYPLANE_MIGRATE_ON_START/],
    [
      { RELAYPLANE_SYNC_INTERVAL_SECONDS: '1' },
      /^Invalid configuration: RELAYPLANE_SYNC_INTERVAL_SECONDS must be at least 5 \(got "1"\)$/,
    ],
    [{ RELAYPLANE_SYNC_DEBOUNCE_MS: 'soon' }, /RELAYPLANE_SYNC_DEBOUNCE_MS/],
    [
      { RELAYPLANE_DEPLOY_CONCURRENCY: '0' },
      /^Invalid configuration: RELAYPLANE_DEPLOY_CONCURRENCY must be an integer between 1 and 64/,
    ],
    [
      { RELAYPLANE_SSH_IDLE_SECONDS: '-1' },
      /^Invalid configuration: RELAYPLANE_SSH_IDLE_SECONDS must be a whole number of seconds between 0 and 3600 \(got "-1"\)$/,
    ],
    [
      { RELAYPLANE_CONFIG_BUNDLE_RETENTION_DAYS: '0' },
      /^Invalid configuration: RELAYPLANE_CONFIG_BUNDLE_RETENTION_DAYS must be at least 1 \(got "0"\)$/,
    ],
    [
      { RELAYPLANE_TOKEN_RATE_LIMIT_PER_ADDRESS: '0' },
      /^Invalid configuration: RELAYPLANE_TOKEN_RATE_LIMIT_PER_ADDRESS must be a whole number between 1 and 1000000 \(got "0"\)$/,
    ],
    [
      { RELAYPLANE_TOKEN_RATE_LIMIT_PER_KEY: '2.5' },
      /^Invalid configuration: RELAYPLANE_TOKEN_RATE_LIMIT_PER_KEY must be a whole number/,
    ],
    [
      { RELAYPLANE_TOKEN_RATE_LIMIT_WINDOW_SECONDS: 'soon' },
      /^Invalid configuration: RELAYPLANE_TOKEN_RATE_LIMIT_WINDOW_SECONDS must be a whole number of seconds between 1 and 86400/,
    ],
    [
      { RELAYPLANE_TRUST_PROXY: 'true' },
      /^Invalid configuration: RELAYPLANE_TRUST_PROXY must be a comma-separated list of proxy addresses/,
    ],
    [{ RELAYPLANE_TRUST_PROXY: '2' }, /RELAYPLANE_TRUST_PROXY/],
    [{ RELAYPLANE_TRUST_PROXY: '10.0.0.0/33' }, /RELAYPLANE_TRUST_PROXY/],
    [
      { RELAYPLANE_DNS_VERIFY_COOLDOWN_SECONDS: '3601' },
      /^Invalid configuration: RELAYPLANE_DNS_VERIFY_COOLDOWN_SECONDS must be at most 3600 \(got "3601"\)$/,
    ],
    [
      { RELAYPLANE_DNS_UNCHECKABLE_LIMIT_SECONDS: '59' },
      /^Invalid configuration: RELAYPLANE_DNS_UNCHECKABLE_LIMIT_SECONDS must be at least 60 \(got "59"\)$/,
    ],
  ])('refuses %o with one line naming the variable', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('never echoes a secret value in its error', () => {
    try {
      loadConfig({ RELAYPLANE_JWT_SECRET: 'hunter2' });
    } catch (error) {
      expect((error as Error).message).not.toContain('hunter2');
      expect((error as Error).message.split('\n')).toHaveLength(1);
    }
  });
});
