import { isUniqueViolation, type PrismaClient } from '../db/prisma.js';
import { probeNode } from '../deploy/index.js';
import { nodeTarget, pinnedFingerprint, scanHostKey, type SshSettings } from '../ssh/index.js';
import type { Node } from '../generated/prisma/client.js';
import { changedFields } from '../lib/changes.js';
import {
  ConflictError,
  NotFoundError,
  PreconditionFailedError,
  UnprocessableError,
  ValidationError,
} from '../lib/errors.js';
import { assertVersion } from '../lib/etag.js';
import { normalizeHost } from '../lib/names.js';
import { idCursor, type PageRequest, toPage } from '../lib/pagination.js';
import { isSafeReleaseDir } from '../postfix/index.js';
import type { AuditRepository } from '../repositories/audit.repository.js';
import { auditEntry } from './audit.service.js';
import type { NodeRepository } from '../repositories/node.repository.js';
import type { ConfigService } from './config.service.js';
import { requireAdmin, type RequestContext } from './principal.js';
import type { LogCursorRow } from '../repositories/usage.repository.js';
import type { QuarantineService } from './quarantine.service.js';
import type { UsageService } from './usage.service.js';
import { checkForwardConfirmedRdns, type DnsResolver } from '../dns/index.js';

const ADMIN_ONLY = 'nodes are shared infrastructure: admin only';

const listCursor = idCursor('nodes');

export interface NodeInput {
  name: string;
  sshHost: string;
  sshPort?: number;
  sshUser?: string;
  hostKey: string;
  configDir?: string;
  logPath?: string | null;
  enabled?: boolean;
}

interface DesiredConfig {
  version: string | null;
  status: { state: 'ok' | 'quarantine' | 'error'; quarantinedUnits: number; detail: string | null };
}

const KEY_TYPES = ['ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521'];
const AUDITED = ['name', 'sshHost', 'sshPort', 'sshUser', 'hostKey', 'configDir', 'logPath', 'enabled'] as const;

function invalid(field: string, message: string): never {
  throw new ValidationError(`${field} ${message}`, [{ field, message }]);
}

/**
 * An OpenSSH public key line (`type base64 [comment]`, stored without the comment) whose blob names
 * the same key type, or a `SHA256:` fingerprint as `ssh-keygen -lf` prints it.
 */
export function normalizeHostKey(field: string, input: string): string {
  const value = input.trim();
  if (/^SHA256:[A-Za-z0-9+/]{43}=?$/.test(value)) return value.replace(/=$/, '');
  const [type, blob] = value.split(/\s+/);
  if (type === undefined || blob === undefined || !KEY_TYPES.includes(type) || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) {
    invalid(
      field,
      `must be an OpenSSH public key line (${KEY_TYPES.join(', ')}) or a SHA256:<43 base64 characters> fingerprint`,
    );
  }
  const raw = Buffer.from(blob, 'base64');
  const nameLength = raw.length >= 4 ? raw.readUInt32BE(0) : -1;
  if (nameLength < 0 || raw.subarray(4, 4 + nameLength).toString('latin1') !== type) {
    invalid(field, `the key blob is not a ${type} key`);
  }
  return `${type} ${blob}`;
}

function normalizeConfigDir(field: string, input: string): string {
  if (!isSafeReleaseDir(input) || input.length < 2 || input.endsWith('/')) {
    invalid(
      field,
      'must be an absolute path of letters, digits, ".", "_", "-" and "/" without a trailing slash or ".."',
    );
  }
  return input;
}

function normalizeLogPath(field: string, input: string): string {
  if (!isSafeReleaseDir(input) || input.endsWith('/')) {
    invalid(field, 'must be an absolute file path of letters, digits, ".", "_", "-" and "/" without ".."');
  }
  return input;
}

function normalizeUser(field: string, input: string): string {
  if (!/^[a-z_][a-z0-9_.-]{0,31}$/i.test(input)) invalid(field, 'must be a plain user name');
  return input;
}

interface Deps {
  prisma: PrismaClient;
  nodes: NodeRepository;
  audit: AuditRepository;
  config: ConfigService;
  usage: Pick<UsageService, 'nodeStatuses' | 'nodeStatus'>;
  quarantine: Pick<QuarantineService, 'count'>;
  /** DNS for the forward-confirmed reverse DNS check of the node's HELO name. */
  resolver: () => DnsResolver;
  ssh: SshSettings;
  readPrivateKey: () => Promise<string>;
  now?: () => Date;
}

export function createNodeService(deps: Deps) {
  /** The HELO name's forward-confirmed reverse DNS; a resolver that cannot even be set up is a finding, not a failed check. */
  async function rdnsOf(heloName: string) {
    try {
      return await checkForwardConfirmedRdns(heloName, deps.resolver());
    } catch (error) {
      return {
        heloName,
        addresses: [],
        ptr: {},
        ok: false,
        problems: [error instanceof Error ? error.message : String(error)],
      };
    }
  }

  const now = deps.now ?? (() => new Date());

  async function load(ctx: RequestContext, id: string) {
    requireAdmin(ctx, ADMIN_ONLY);
    const node = await deps.nodes.findById(deps.prisma, id);
    if (node === null) throw new NotFoundError('node', id);
    return node;
  }

  /**
   * The version the current config compiles to (null when it does not compile), and what the sync
   * job's last compile quarantined: an operator looking at a node sees why it runs less than asked.
   */
  async function desiredConfig(): Promise<DesiredConfig> {
    const quarantinedUnits = await deps.quarantine.count();
    try {
      const version = await deps.config.currentVersion();
      if (quarantinedUnits === 0) return { version, status: { state: 'ok', quarantinedUnits, detail: null } };
      const detail = `${quarantinedUnits} configuration unit(s) quarantined: their last routes are kept or their senders are refused for now (451); see GET /v1/config`;
      return { version, status: { state: 'quarantine', quarantinedUnits, detail } };
    } catch (error) {
      const detail = `the configuration could not be compiled: ${error instanceof Error ? error.message.slice(0, 400) : String(error)}`;
      return { version: null, status: { state: 'error', quarantinedUnits, detail } };
    }
  }

  /** Where usage collection stands on the node (null: never attempted). */
  function usageStatus(cursor: LogCursorRow | undefined) {
    if (cursor === undefined) return null;
    const last = cursor.lastCollectedAt;
    return {
      logPath: cursor.path === '' ? null : cursor.path,
      lastCollectedAt: last?.toISOString() ?? null,
      lagSeconds: last === null ? null : Math.max(0, Math.round((now().getTime() - last.getTime()) / 1000)),
      lastLineAt: cursor.lastLineAt?.toISOString() ?? null,
      offset: Number(cursor.offset),
      linesRead: Number(cursor.linesRead),
      linesMalformed: Number(cursor.linesMalformed),
      unattributedLines: Number(cursor.unattributedLines),
      lateEvents: Number(cursor.lateEvents),
      bytesLost: Number(cursor.bytesLost),
      lastError: cursor.lastError,
      lastErrorAt: cursor.lastErrorAt?.toISOString() ?? null,
    };
  }

  function present(node: Node, config: DesiredConfig, cursor: LogCursorRow | undefined) {
    const desired = config.version;
    return {
      id: node.id,
      name: node.name,
      sshHost: node.sshHost,
      sshPort: node.sshPort,
      sshUser: node.sshUser,
      hostKey: node.hostKey,
      hostKeyFingerprint: pinnedFingerprint(node.hostKey),
      configDir: node.configDir,
      logPath: node.logPath,
      enabled: node.enabled,
      desiredVersion: desired,
      configStatus: config.status,
      liveVersion: node.liveVersion,
      drift: node.driftDetected || (desired !== null && node.liveVersion !== desired),
      driftFiles: node.driftDetected ? node.driftFiles : [],
      lastError: node.lastError,
      lastDeployedAt: node.lastDeployedAt?.toISOString() ?? null,
      lastCheckAt: node.lastCheckAt?.toISOString() ?? null,
      usage: usageStatus(cursor),
      createdAt: node.createdAt.toISOString(),
      updatedAt: node.updatedAt.toISOString(),
      version: node.version,
    };
  }

  function normalized(input: Partial<NodeInput>) {
    return {
      ...(input.name === undefined ? {} : { name: input.name }),
      ...(input.sshHost === undefined ? {} : { sshHost: normalizeHost('body/sshHost', input.sshHost) }),
      ...(input.sshPort === undefined ? {} : { sshPort: input.sshPort }),
      ...(input.sshUser === undefined ? {} : { sshUser: normalizeUser('body/sshUser', input.sshUser) }),
      ...(input.hostKey === undefined ? {} : { hostKey: normalizeHostKey('body/hostKey', input.hostKey) }),
      ...(input.configDir === undefined ? {} : { configDir: normalizeConfigDir('body/configDir', input.configDir) }),
      ...(input.logPath === undefined
        ? {}
        : { logPath: input.logPath === null ? null : normalizeLogPath('body/logPath', input.logPath) }),
      ...(input.enabled === undefined ? {} : { enabled: input.enabled }),
    };
  }

  function nameTaken(error: unknown): never {
    if (isUniqueViolation(error, 'name'))
      throw new ConflictError('a node with this name already exists', 'node-name-taken');
    throw error;
  }

  return {
    async create(ctx: RequestContext, input: NodeInput) {
      requireAdmin(ctx, ADMIN_ONLY);
      const data = {
        ...normalized(input),
        name: input.name,
        sshHost: normalizeHost('body/sshHost', input.sshHost),
        hostKey: normalizeHostKey('body/hostKey', input.hostKey),
      };
      const node = await deps.prisma
        .$transaction(async (tx) => {
          const created = await deps.nodes.create(tx, data);
          await deps.nodes.notifyTargetsChanged(tx);
          await deps.audit.record(
            tx,
            auditEntry(ctx, {
              tenantId: null,
              action: 'node.created',
              resourceId: created.id,
              changes: changedFields(null, created, [...AUDITED]),
            }),
          );
          return created;
        })
        .catch(nameTaken);
      return present(node, await desiredConfig(), await deps.usage.nodeStatus(node.id));
    },

    async list(ctx: RequestContext, query: PageRequest) {
      requireAdmin(ctx, ADMIN_ONLY);
      const rows = await deps.nodes.list(deps.prisma, {
        afterId: listCursor.decode(query.cursor),
        take: query.limit + 1,
      });
      const page = toPage(rows, query.limit, (row) => listCursor.encode(row.id));
      const desired = await desiredConfig();
      const statuses = await deps.usage.nodeStatuses();
      return {
        items: page.items.map((node) => present(node, desired, statuses.get(node.id))),
        next_cursor: page.next_cursor,
      };
    },

    async get(ctx: RequestContext, id: string) {
      const node = await load(ctx, id);
      return present(node, await desiredConfig(), await deps.usage.nodeStatus(node.id));
    },

    async update(ctx: RequestContext, id: string, input: Partial<NodeInput>, expected: number | undefined) {
      const current = await load(ctx, id);
      assertVersion(current.version, expected, 'node');
      const data = normalized(input);
      // A new address, user or key means the node's recorded state may be someone else's.
      const moved = ['sshHost', 'sshPort', 'sshUser', 'hostKey', 'configDir'].some(
        (f) => f in data && data[f as keyof typeof data] !== current[f as keyof Node],
      );
      const node = await deps.prisma
        .$transaction(async (tx) => {
          const row = await deps.nodes.update(
            tx,
            id,
            current.version,
            moved ? { ...data, liveVersion: null, driftDetected: false, driftFiles: [], lastError: null } : data,
          );
          if (row === null)
            throw new PreconditionFailedError('node changed while this request was processed: read it again and retry');
          await deps.nodes.notifyTargetsChanged(tx);
          await deps.audit.record(
            tx,
            auditEntry(ctx, {
              tenantId: null,
              action: 'node.updated',
              resourceId: id,
              changes: changedFields(current, row, [...AUDITED]),
            }),
          );
          return row;
        })
        .catch(nameTaken);
      return present(node, await desiredConfig(), await deps.usage.nodeStatus(node.id));
    },

    /** Forgets the node; its deployment history stays (by name). Nothing is removed from the node itself. */
    async delete(ctx: RequestContext, id: string, expected: number | undefined) {
      const current = await load(ctx, id);
      assertVersion(current.version, expected, 'node');
      await deps.prisma.$transaction(async (tx) => {
        await deps.nodes.delete(tx, id);
        await deps.audit.record(
          tx,
          auditEntry(ctx, {
            tenantId: null,
            action: 'node.deleted',
            resourceId: id,
            changes: { name: { from: current.name, to: null } },
          }),
        );
      });
    },

    /**
     * Reads the host key a would-be node presents (trust on first use, but never silently): the
     * answer is only shown; an administrator pins it by registering the node with it after
     * comparing the fingerprint with the node's console.
     */
    async scanHostKey(ctx: RequestContext, input: { sshHost: string; sshPort?: number }) {
      requireAdmin(ctx, ADMIN_ONLY);
      const host = normalizeHost('body/sshHost', input.sshHost);
      const port = input.sshPort ?? 22;
      try {
        const scanned = await scanHostKey(host, port, deps.ssh.connectTimeoutMs);
        return { sshHost: host, sshPort: port, ...scanned };
      } catch (error) {
        throw new UnprocessableError(error instanceof Error ? error.message : String(error), 'host-unreachable');
      }
    },

    /** Connects with the pinned host key and reports whether the node is fit for deploys. */
    async check(ctx: RequestContext, id: string) {
      const node = await load(ctx, id);
      const privateKey = await deps.readPrivateKey();
      const probe = await probeNode(nodeTarget(node, privateKey, deps.ssh), node.configDir);
      // The article's rDNS advice: the HELO name's A/AAAA records and their PTRs must agree.
      // Reported, not a deploy problem (a relay-only node can live without it).
      const rdns = probe.heloName === null ? null : await rdnsOf(probe.heloName);
      const checkedAt = now();
      await deps.nodes.recordStatus(deps.prisma, id, {
        lastCheckAt: checkedAt,
        lastError: probe.problems.length === 0 ? null : probe.problems.join('; ').slice(0, 500),
      });
      return { nodeId: id, ok: probe.problems.length === 0, checkedAt: checkedAt.toISOString(), ...probe, rdns };
    },
  };
}

export type NodeService = ReturnType<typeof createNodeService>;
