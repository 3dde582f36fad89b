import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

interface Logger {
  info(obj: object, msg: string): void;
}

/**
 * A secret kept in the data dir for the embedded default: generated once, stored 0600,
 * reused on every later start. Its value is never logged, only that it was generated.
 */
export async function localSecret(
  dataDir: string,
  name: string,
  generate: () => string,
  logger: Logger,
): Promise<string> {
  const file = path.join(dataDir, 'secrets', name);
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const value = generate();
  try {
    // 'wx': never overwrite a secret another process generated a moment ago.
    await writeFile(file, `${value}\n`, { mode: 0o600, flag: 'wx' });
    logger.info({ name, file }, 'generated');
    return value;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return (await readFile(file, 'utf8')).trim();
  }
}

export const generateJwtSecret = () => randomBytes(48).toString('base64url');
export const generateMasterKey = () => randomBytes(32).toString('base64');
