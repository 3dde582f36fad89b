import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { PrismaClient } from '../db/prisma.js';
import type { CredentialStatus, RelayCredential } from '../generated/prisma/client.js';
import { ConflictError, ForbiddenError, NotFoundError, UnprocessableError, ValidationError } from '../lib/errors.js';
import { idCursor, type PageRequest, toPage } from '../lib/pagination.js';
import type { SecretBox } from '../lib/secret-box.js';
import { isValidSaslSecret, isValidSaslUsername } from '../postfix/map-encoding.js';
import { relayTlsPolicy } from '../postfix/resolve.js';
import type { AuditRepository } from '../repositories/audit.repository.js';
import { auditEntry } from './audit.service.js';
import type { CredentialRepository } from '../repositories/credential.repository.js';
import type { DomainRepository } from '../repositories/domain.repository.js';
import type { RelayRepository } from '../repositories/relay.repository.js';
import { isAdmin, type RequestContext } from './principal.js';
import type { RelayService } from './relay.service.js';
import { probeSmtpAuth } from '../smtp/auth-probe.js';

const listCursor = idCursor('credentials');

export interface CredentialInput {
  username: string;
  secret: string;
  domainId?: string;
}

/** Metadata only: the secret, its ciphertext and nonce never leave this module. */
export function presentCredential(credential: RelayCredential) {
  return {
    id: credential.id,
    relayId: credential.relayId,
    domainId: credential.domainId,
    tenantId: credential.tenantId,
    username: credential.username,
    fingerprint: credential.fingerprint,
    status: credential.status,
    activatedAt: credential.activatedAt?.toISOString() ?? null,
    retiredAt: credential.retiredAt?.toISOString() ?? null,
    createdAt: credential.createdAt.toISOString(),
    updatedAt: credential.updatedAt.toISOString(),
  };
}

interface Deps {
  prisma: PrismaClient;
  credentials: CredentialRepository;
  relays: RelayRepository;
  domains: DomainRepository;
  relayService: RelayService;
  audit: AuditRepository;
  secretBox: SecretBox;
  /** A real SMTP AUTH against the relay (tests pass another). */
  probeAuth?: typeof probeSmtpAuth;
  /** RELAYPLANE_TLS_CA_FILE: the CA file the nodes trust (read at each test); undefined: the system store. */
  tlsCaFile?: string | undefined;
  now?: () => Date;
}

function invalid(field: string, message: string): never {
  throw new ValidationError(`${field} ${message}`, [{ field, message }]);
}

export function createCredentialService(deps: Deps) {
  const now = deps.now ?? (() => new Date());

  /** A tenant sees only credentials it owns; another tenant's answer 404. */
  async function load(ctx: RequestContext, id: string) {
    const credential = await deps.credentials.findById(deps.prisma, id);
    if (credential === null || (ctx.actor.tenantId !== null && credential.tenantId !== ctx.actor.tenantId)) {
      throw new NotFoundError('credential', id);
    }
    return credential;
  }

  function audit(
    ctx: RequestContext,
    tx: Parameters<CredentialRepository['create']>[0],
    credential: RelayCredential,
    action: string,
    changes: Record<string, unknown>,
  ) {
    return deps.audit.record(
      tx,
      auditEntry(ctx, {
        tenantId: credential.tenantId,
        action,
        resourceType: 'credential',
        resourceId: credential.id,
        changes,
      }),
    );
  }

  return {
    /** A credential the caller may see (with its relay), or 404: the rotation acts on it. */
    loadVisible: load,

    /**
     * The first credential of a scope is active at once; later ones are staged until activated
     * (src/services/credential-rotation.ts).
     */
    async create(ctx: RequestContext, relayId: string, input: CredentialInput) {
      const relay = await deps.relayService.loadVisible(ctx, relayId);
      if (!isValidSaslUsername(input.username)) {
        invalid(
          'body/username',
          'must be printable text without whitespace, control characters or ":" (it becomes a Postfix map value)',
        );
      }
      if (!isValidSaslSecret(input.secret)) {
        invalid('body/secret', 'must not contain control characters, line breaks, or leading or trailing whitespace');
      }
      const domainId = input.domainId ?? null;
      let tenantId = relay.tenantId;
      if (domainId !== null) {
        const domain = await deps.domains.findById(deps.prisma, domainId);
        if (domain === null || (ctx.actor.tenantId !== null && domain.tenantId !== ctx.actor.tenantId))
          throw new NotFoundError('domain', domainId);
        if (relay.tenantId !== null && relay.tenantId !== domain.tenantId) {
          throw new UnprocessableError(
            "domainId belongs to another tenant than this private relay's owner",
            'credential-scope-invalid',
          );
        }
        if (relay.connectionReuseSeconds !== null) {
          throw new UnprocessableError(
            'this relay has connectionReuseSeconds, which needs connection caching; a domain-scoped credential turns it off (clear the limit first)',
            'limits-not-honourable',
          );
        }
        tenantId = domain.tenantId;
      } else if (!isAdmin(ctx.actor) && relay.tenantId === null) {
        throw new ForbiddenError(
          'on a shared relay a tenant credential must be scoped to one of its domains (domainId)',
        );
      }

      const id = randomUUID();
      const sealed = deps.secretBox.seal(input.secret, id);
      const credential = await deps.prisma.$transaction(async (tx) => {
        await deps.relays.lock(tx, relayId);
        const active = await deps.credentials.findActive(tx, relayId, domainId);
        const status: CredentialStatus = active === null ? 'active' : 'staged';
        const created = await deps.credentials.create(tx, {
          id,
          relayId,
          domainId,
          tenantId,
          username: input.username,
          secretCiphertext: new Uint8Array(sealed.ciphertext),
          secretNonce: new Uint8Array(sealed.nonce),
          secretKeyId: sealed.keyId,
          fingerprint: deps.secretBox.fingerprint(input.secret),
          status,
          activatedAt: status === 'active' ? now() : null,
        });
        await audit(ctx, tx, created, 'credential.created', {
          relayId,
          domainId,
          username: input.username,
          status,
          // The secret itself never reaches the audit log: only that it was set, and its keyed fingerprint.
          secret: 'set',
          fingerprint: created.fingerprint,
        });
        return created;
      });
      return presentCredential(credential);
    },

    async list(
      ctx: RequestContext,
      relayId: string,
      query: PageRequest & { status?: CredentialStatus; domainId?: string },
    ) {
      await deps.relayService.loadVisible(ctx, relayId);
      const rows = await deps.credentials.list(deps.prisma, {
        relayId,
        tenantId: ctx.actor.tenantId ?? undefined,
        domainId: query.domainId,
        status: query.status,
        afterId: listCursor.decode(query.cursor),
        take: query.limit + 1,
      });
      const page = toPage(rows, query.limit, (row) => listCursor.encode(row.id));
      return { items: page.items.map(presentCredential), next_cursor: page.next_cursor };
    },

    async get(ctx: RequestContext, id: string) {
      return presentCredential(await load(ctx, id));
    },

    /**
     * A real SMTP AUTH with this credential against its relay (TLS as the relay says), from the
     * control plane; recorded, audited, and answered. Before activating a new credential, this
     * tells a typo from a rotation problem.
     */
    async test(ctx: RequestContext, id: string) {
      const credential = await load(ctx, id);
      const relay = credential.relay;
      const secret = deps.secretBox.open(
        {
          ciphertext: Buffer.from(credential.secretCiphertext),
          nonce: Buffer.from(credential.secretNonce),
          keyId: credential.secretKeyId,
        },
        credential.id,
      );
      // Judged as the nodes will: the compiled tls_policy level, the CA file they trust.
      const certificateCheck = relayTlsPolicy(relay);
      const trustStore = deps.tlsCaFile ?? 'system';
      let ca: string | undefined;
      if (deps.tlsCaFile !== undefined && (certificateCheck === 'verify' || certificateCheck === 'secure')) {
        ca = await readFile(deps.tlsCaFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
          throw new UnprocessableError(
            `the nodes' CA file ${deps.tlsCaFile} (RELAYPLANE_TLS_CA_FILE) cannot be read: ${err.code ?? err.message}`,
            'trust-store-unreadable',
          );
        });
      }
      const probe = await (deps.probeAuth ?? probeSmtpAuth)({
        host: relay.host,
        port: relay.port,
        tls: relay.tls,
        level: certificateCheck,
        ca,
        username: credential.username,
        secret,
      });
      const r = { ...probe, certificateCheck, trustStore };
      const testedAt = now();
      await deps.prisma.$transaction(async (tx) => {
        await deps.credentials.recordTest(tx, {
          credentialId: id,
          testedAt,
          ok: r.ok,
          stage: r.stage,
          detail: r.detail,
          tlsProtocol: r.tlsProtocol,
          durationMs: r.durationMs,
        });
        await audit(ctx, tx, credential, 'credential.tested', { ok: r.ok, stage: r.stage });
      });
      return { credentialId: id, relayId: relay.id, testedAt: testedAt.toISOString(), ...r };
    },

    async delete(ctx: RequestContext, id: string) {
      const credential = await load(ctx, id);
      if (!isAdmin(ctx.actor) && credential.relay.tenantId === null && credential.domainId === null) {
        throw new ForbiddenError('relay-wide credentials of shared relays are managed by admins');
      }
      await deps.prisma.$transaction(async (tx) => {
        // In use: a domain's route reaches it (its own domain via this relay; for a relay-wide one,
        // any domain via this relay). An active credential no route reaches compiles to nothing.
        if (
          credential.status === 'active' &&
          (await deps.domains.routesThrough(tx, credential.relayId, credential.domainId))
        ) {
          throw new ConflictError(
            'an active credential is in use by a route: activate its replacement first (that retires this one)',
            'credential-active',
          );
        }
        await deps.credentials.delete(tx, id);
        await audit(ctx, tx, credential, 'credential.deleted', {
          username: credential.username,
          status: credential.status,
        });
      });
    },
  };
}

export type CredentialService = ReturnType<typeof createCredentialService>;
