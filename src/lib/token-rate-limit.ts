/**
 * Limits of `POST /v1/auth/token`, read both by config.ts (the environment's defaults) and by the
 * auth plugin when the app is built without them (tests, benchmarks). A module without imports.
 *
 * Each exchange costs an argon2id verification (slow on purpose), so the per-address
 * limit bounds what one client can make the server spend; the per-key-id limit bounds guesses at
 * one key's secret from many addresses. A client keeps its token for its lifetime (15 min by
 * default), so honest callers stay far below both.
 */
export interface TokenRateLimit {
  /** Exchanges one client address may attempt per window. */
  perAddress: number;
  /** Exchanges naming one key id (known or not) per window, from any address. */
  perKeyId: number;
  windowSeconds: number;
}

export const DEFAULT_TOKEN_RATE_LIMIT: Readonly<TokenRateLimit> = { perAddress: 30, perKeyId: 5, windowSeconds: 60 };
