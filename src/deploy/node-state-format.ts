/** What the node's state reads print, shared by their shell scripts (postfix-config.ts) and Perl bodies (node-state-perl.ts). */

/** Follows each part of a read's output. */
export const SEP = '@@relayplane@@';

/** Printed instead of postconf's answers when main.cf, master.cf and postconf are as last read. */
export const KNOWN = '@@relayplane-config-known@@';

export const PATHS_COMMAND = 'postconf -xh config_directory maillog_file daemon_directory queue_directory';

export const CONFIG_READS = ['postconf -n', 'postconf -M', 'postconf -P'];
