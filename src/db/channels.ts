/**
 * PostgreSQL NOTIFY channels: repositories notify on them, the sync worker listens. Here so both
 * sides import them without a repository importing the deployer.
 */

/** Every committed write to a table the compiler reads (database triggers, and node changes). */
export const CONFIG_CHANNEL = 'relayplane_config';
/** A deployment was requested through the API (a pending row). */
export const DEPLOY_CHANNEL = 'relayplane_deploy';
