// Shell lists the deployer sends to a node, for work that can run side by side there.

/**
 * One shell command that runs `jobs` (each a command list) and succeeds when every one exited 0:
 * a single job inline, several as background jobs waited for one by one (each job's own umask
 * and failures stay in its subshell). The node's cores build tables side by side. A job may end
 * in a here-document: each is closed on a line of its own.
 */
export function concurrently(jobs: readonly string[]): string {
  if (jobs.length === 1) return `{ ${jobs[0]}\n}`;
  const started = jobs.map((job) => `{ ${job}\n} & rp_jobs="$rp_jobs $!"`).join('\n');
  return `{ rp_jobs=''\n${started}\nrp_ok=0; for rp_job in $rp_jobs; do wait "$rp_job" || rp_ok=1; done; [ "$rp_ok" = 0 ]; }`;
}

/** Shell text run around a frame's own work: `start` before it, `finish` after it (the work's exit code is the frame's). */
export interface BesideScript {
  start: string;
  finish: string;
}
