import type { FastifyReply, FastifyRequest } from 'fastify';
import { etagOf } from '../lib/etag.js';
import type { RequestContext } from '../services/principal.js';

export function contextOf(request: FastifyRequest): RequestContext {
  return { actor: request.principal, requestId: request.id };
}

/** Sends a versioned resource with its ETag (the `version` field itself is not part of the body). */
export function sendVersioned<T extends { version: number }>(reply: FastifyReply, resource: T, status = 200) {
  return reply.status(status).header('etag', etagOf(resource.version)).send(resource);
}
