/**
 * The sync worker's clock and conscience: leader election, change notifications, debounce and the
 * periodic reconcile. What a run does lives in src/jobs/sync.ts (`handlers`).
 *
 * - Leader election: one dedicated PostgreSQL connection per process holds a session-level
 *   `pg_try_advisory_lock` while leading (released by PostgreSQL itself when the process or its
 *   connection dies); followers retry every `leaderPollMs`. Only the leader runs jobs, one at a
 *   time, so at most one deployer acts across all API processes.
 * - Changes: every committed write to a table the compiler reads sends `NOTIFY relayplane_config`
 *   (database triggers, see the nodes_and_deployments migration), so changes made by any process
 *   (another API instance, the CLI) reach the leader. Bursts are coalesced: a run starts
 *   `debounceMs` after the last notification, or at most 10 × debounceMs after the first.
 * - `NOTIFY relayplane_deploy`: a deployment was requested through the API (a pending row).
 * - Reconcile: every `reconcileIntervalMs`, and at once on becoming leader (a change notified while
 *   nobody led is not lost: the reconcile compares every node with the current config).
 * - Periodic tasks (usage collection, DNS re-verification): each every `intervalMs` while leading,
 *   each in a lane of its own so that reading logs or querying DNS never delays a deploy; one run
 *   of a task at a time.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { CONFIG_CHANNEL, DEPLOY_CHANNEL } from '../db/channels.js';

export interface SyncHandlers {
  /** Pending deployments requested through the API. */
  runRequested(): Promise<void>;
  /** The config changed: compile, deploy if the version moved. */
  runChange(): Promise<void>;
  /** Compare every node with the current config, repair drift. */
  runReconcile(): Promise<void>;
  /**
   * The config changed and a change run follows once the burst is over: work that run can reuse
   * (the compile) starts now, during the debounce. Deploys nothing; its failure is the run's to report.
   */
  prepareChange?(): Promise<void>;
}

interface WorkerLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface SyncWorkerOptions {
  databaseUrl: string;
  debounceMs: number;
  reconcileIntervalMs: number;
  /** How often a follower tries to become leader (default: the smaller of 5 s and the reconcile interval). */
  leaderPollMs?: number;
  log: WorkerLog;
  handlers: SyncHandlers;
  /** Tasks the leader runs periodically besides deploys (usage collection, DNS checks). */
  periodic?: PeriodicTask[];
}

export interface PeriodicTask {
  name: string;
  /** 0: never on a timer (runPeriodic still runs it). */
  intervalMs: number;
  run(): Promise<void>;
}

type JobKind = 'requested' | 'change' | 'reconcile';
const ORDER: JobKind[] = ['requested', 'change', 'reconcile'];

/** One advisory lock key per database schema (two installations may share a database). */
function lockKey(schema: string): bigint {
  return createHash('sha256').update(`relayplane-sync-leader:${schema}`).digest().readBigInt64BE(0);
}

/** How long a lost connection waits to be reported: a stop arriving meanwhile explains it. */
const LOST_CONNECTION_GRACE_MS = 500;

export class SyncWorker {
  private client: pg.Client | undefined;
  private leading = false;
  private stopped = false;
  private readonly queued = new Set<JobKind>();
  private running: Promise<void> | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private firstChangeAt: number | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private reconcileTimer: NodeJS.Timeout | undefined;
  private readonly periodicTimers: NodeJS.Timeout[] = [];
  private readonly periodicRuns = new Map<string, Promise<void>>();
  private connecting: Promise<void> | undefined;
  private preparing: Promise<void> | undefined;
  private readonly connectionString: string;
  private readonly key: bigint;

  constructor(private readonly options: SyncWorkerOptions) {
    const url = new URL(options.databaseUrl);
    const schema = url.searchParams.get('schema') ?? 'public';
    url.searchParams.delete('schema');
    this.connectionString = url.toString();
    this.key = lockKey(schema);
  }

  get isLeader(): boolean {
    return this.leading;
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.ensureLeadership();
    const poll = this.options.leaderPollMs ?? Math.min(5000, this.options.reconcileIntervalMs);
    this.pollTimer = setInterval(() => void this.ensureLeadership(), poll);
    this.reconcileTimer = setInterval(() => this.enqueue('reconcile'), this.options.reconcileIntervalMs);
    for (const task of this.options.periodic ?? []) {
      if (task.intervalMs > 0)
        this.periodicTimers.push(setInterval(() => void this.runPeriodic(task.name), task.intervalMs));
    }
  }

  /** Runs a periodic task now if this process leads and the task is not running; resolves when it is done. */
  runPeriodic(name: string): Promise<void> {
    const task = this.options.periodic?.find((t) => t.name === name);
    if (task === undefined || this.stopped || !this.leading) return Promise.resolve();
    let run = this.periodicRuns.get(name);
    if (run === undefined) {
      run = task
        .run()
        .catch((err: unknown) => this.options.log.error({ err, task: name }, 'periodic task failed'))
        .finally(() => this.periodicRuns.delete(name));
      this.periodicRuns.set(name, run);
    }
    return run;
  }

  /** Stops timers, lets a running job finish, gives up the lock and the connection. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.pollTimer);
    clearInterval(this.reconcileTimer);
    for (const timer of this.periodicTimers.splice(0)) clearInterval(timer);
    clearTimeout(this.debounceTimer);
    this.queued.clear();
    await this.connecting?.catch(() => undefined);
    await this.preparing;
    await this.running?.catch(() => undefined);
    await Promise.all(this.periodicRuns.values());
    const client = this.client;
    this.client = undefined;
    if (client !== undefined) {
      if (this.leading)
        await client.query('SELECT pg_advisory_unlock($1::bigint)', [this.key.toString()]).catch(() => undefined);
      this.leading = false;
      await client.end().catch(() => undefined);
    }
  }

  /** Resolves when no job runs and none is queued or debounced (for an orderly wait in tests and tools). */
  async idle(): Promise<void> {
    while (this.running !== undefined || this.debounceTimer !== undefined || (this.leading && this.queued.size > 0)) {
      await (this.running ?? new Promise((r) => setTimeout(r, 20)));
    }
  }

  /** The config changed in this process (the database also notifies; this only saves a round trip). */
  configChanged(): void {
    if (this.stopped || !this.leading) return;
    const now = Date.now();
    this.firstChangeAt ??= now;
    clearTimeout(this.debounceTimer);
    const maxWait = this.options.debounceMs * 10;
    const wait = Math.max(0, Math.min(this.options.debounceMs, this.firstChangeAt + maxWait - now));
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      this.firstChangeAt = undefined;
      this.enqueue('change');
    }, wait);
    this.prepare();
  }

  /** One preparation at a time: a notification during one is picked up by the run itself. */
  private prepare(): void {
    const prepareChange = this.options.handlers.prepareChange?.bind(this.options.handlers);
    if (prepareChange === undefined || this.preparing !== undefined) return;
    this.preparing = prepareChange()
      .catch((err: unknown) => this.options.log.debug({ err }, 'preparing a change run failed'))
      .finally(() => {
        this.preparing = undefined;
      });
  }

  enqueue(kind: JobKind): void {
    if (this.stopped || !this.leading) return;
    this.queued.add(kind);
    this.pump();
  }

  private pump(): void {
    if (this.running !== undefined) return;
    this.running = (async () => {
      try {
        while (!this.stopped && this.leading) {
          const kind = ORDER.find((k) => this.queued.has(k));
          if (kind === undefined) break;
          this.queued.delete(kind);
          try {
            if (kind === 'requested') await this.options.handlers.runRequested();
            else if (kind === 'change') await this.options.handlers.runChange();
            else await this.options.handlers.runReconcile();
          } catch (err) {
            this.options.log.error({ err, job: kind }, 'sync job failed');
          }
        }
      } finally {
        this.running = undefined;
      }
    })();
  }

  private ensureLeadership(): Promise<void> {
    if (this.stopped || this.leading) return Promise.resolve();
    this.connecting ??= this.tryLead().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async tryLead(): Promise<void> {
    try {
      if (this.client === undefined) {
        const client = new pg.Client({ connectionString: this.connectionString, application_name: 'relayplane-sync' });
        client.on('error', (err) => this.lostConnection(client, err));
        client.on('end', () => this.lostConnection(client));
        client.on('notification', (msg) => this.onNotification(msg.channel));
        await client.connect();
        if (this.stopped) {
          await client.end();
          return;
        }
        this.client = client;
      }
      const { rows } = await this.client.query<{ locked: boolean }>(
        'SELECT pg_try_advisory_lock($1::bigint) AS locked',
        [this.key.toString()],
      );
      if (rows[0]?.locked !== true || this.stopped) return;
      await this.client.query(`LISTEN ${CONFIG_CHANNEL}`);
      await this.client.query(`LISTEN ${DEPLOY_CHANNEL}`);
      this.leading = true;
      this.options.log.info({}, 'sync worker is the leader');
      // Whatever happened while nobody led: requested runs, and a full comparison.
      this.queued.add('requested');
      this.queued.add('reconcile');
      this.pump();
    } catch (err) {
      this.options.log.warn({ err }, 'sync worker could not reach the database; retrying');
      const client = this.client;
      this.client = undefined;
      await client?.end().catch(() => undefined);
    }
  }

  private lostConnection(client: pg.Client, err?: Error): void {
    if (client !== this.client) return;
    this.client = undefined;
    if (this.leading && !this.stopped) {
      // A Ctrl-C reaches the embedded PostgreSQL as well as this process, and the database may be
      // seen going away before the signal: judged a moment later, a stop is no lost leadership.
      const at = setTimeout(() => {
        if (!this.stopped)
          this.options.log.error({ err }, 'sync worker lost its database connection: no longer the leader');
      }, LOST_CONNECTION_GRACE_MS);
      at.unref();
    }
    // PostgreSQL released the lock with the session; another process may lead now.
    this.leading = false;
    this.queued.clear();
  }

  private onNotification(channel: string): void {
    if (channel === CONFIG_CHANNEL) this.configChanged();
    else if (channel === DEPLOY_CHANNEL) this.enqueue('requested');
  }
}
