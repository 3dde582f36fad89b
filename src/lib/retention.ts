/**
 * Retention defaults, read both by config.ts (the environment's defaults) and by the services when
 * they are built without a configuration (the CLI, tests). A module of its own, without imports:
 * the config engine's thread loads the bundle store, and config.ts would bring zod along (≈ 0.1 s
 * of the thread's start).
 */
export const DEFAULT_USAGE_MESSAGE_RETENTION_DAYS = 35;
export const DEFAULT_CONFIG_BUNDLE_RETENTION_DAYS = 30;
