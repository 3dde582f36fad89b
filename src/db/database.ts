import { type Config, ConfigError, type RuntimeConfig } from '../config.js';
import { generateJwtSecret, generateMasterKey, localSecret } from '../lib/local-secrets.js';
import { openEmbeddedDatabase } from './embedded.js';

interface Logger {
  info(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface OpenedDatabase {
  config: RuntimeConfig;
  close(): Promise<void>;
}

/**
 * Resolves where the data lives and the keys that protect it. External database: keys must be
 * configured. Embedded default: PostgreSQL runs in the data dir and missing keys are generated once.
 */
export async function openDatabase(config: Config, logger: Logger): Promise<OpenedDatabase> {
  if (!config.isEmbeddedDatabase) {
    if (config.jwtSecret === undefined) {
      throw new ConfigError('Invalid configuration: RELAYPLANE_JWT_SECRET is required when DATABASE_URL is set');
    }
    if (config.masterKey === undefined) {
      throw new ConfigError('Invalid configuration: RELAYPLANE_MASTER_KEY is required when DATABASE_URL is set');
    }
    return {
      config: { ...config, databaseUrl: config.databaseUrl!, jwtSecret: config.jwtSecret, masterKey: config.masterKey },
      close: async () => {},
    };
  }
  const embedded = await openEmbeddedDatabase(config.dataDir, logger);
  const jwtSecret = config.jwtSecret ?? (await localSecret(config.dataDir, 'jwt-secret', generateJwtSecret, logger));
  const masterKey =
    config.masterKey ??
    Buffer.from(await localSecret(config.dataDir, 'master-key', generateMasterKey, logger), 'base64');
  return {
    config: { ...config, databaseUrl: embedded.url, jwtSecret, masterKey },
    close: () => embedded.stop(),
  };
}
