import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { errorCodes, type FastifyInstance, type FastifyRequest, type RouteHandlerMethod } from 'fastify';
import openapiGlue from 'fastify-openapi-glue';
import fp from 'fastify-plugin';
import { parse } from 'yaml';
import type { OperationHandlers } from '../routes/types.js';
import { staleWriteRetrier } from './stale-writes.js';

export const SPEC_PATH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../openapi.yaml');

interface SpecOperation {
  operationId: string;
  security?: Array<Record<string, string[]>>;
  'x-no-fastify-config'?: boolean;
}
interface Spec {
  security?: Array<Record<string, string[]>>;
  paths: Record<string, Record<string, SpecOperation>>;
}

const HTTP_METHODS = new Set(['get', 'put', 'post', 'delete', 'patch', 'head', 'options']);
/** Methods that write a resource in place, optionally under If-Match. */
const WRITES = new Set(['PUT', 'PATCH', 'DELETE']);

export function loadSpec(): { text: string; spec: Spec } {
  const text = readFileSync(SPEC_PATH, 'utf8');
  return { text, spec: parse(text) as Spec };
}

/** Every operation in the spec: method, path and the scopes its security requirement admits ([] = public). */
export function specOperations(spec: Spec) {
  const operations: Array<{
    operationId: string;
    method: string;
    path: string;
    scopes: string[] | null;
    servedByPlugin: boolean;
  }> = [];
  for (const [specPath, item] of Object.entries(spec.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      if (!HTTP_METHODS.has(method)) continue;
      const security = operation.security ?? spec.security ?? [];
      operations.push({
        operationId: operation.operationId,
        method: method.toUpperCase(),
        path: specPath,
        scopes: security.length === 0 ? null : security.flatMap((requirement) => requirement.bearerAuth ?? []),
        servedByPlugin: operation['x-no-fastify-config'] === true,
      });
    }
  }
  return operations;
}

const MEDIA_TYPE = /^[a-z]+\/[a-z0-9.+-]+$/;

/** Every media type named in the spec (requests and responses; `content` properties of schemas left out). */
function mediaTypes(node: unknown, found = new Set<string>()): Set<string> {
  if (Array.isArray(node)) for (const item of node) mediaTypes(item, found);
  else if (node !== null && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === 'content' && value !== null && typeof value === 'object')
        for (const type of Object.keys(value)) if (MEDIA_TYPE.test(type)) found.add(type);
      mediaTypes(value, found);
    }
  }
  return found;
}

/**
 * fastify-openapi-glue warns at every start about each media type of the spec without a body
 * parser (`ContentTypeParser for 'text/csv' not found`), responses' types included. Each such
 * type gets a parser that refuses the body exactly as a missing parser does (415,
 * src/plugins/strict-requests.ts): nothing is accepted that was not before, and the start is quiet.
 */
function refuseOtherMediaTypes(app: FastifyInstance, spec: Spec): void {
  for (const type of mediaTypes(spec)) {
    if (app.hasContentTypeParser(type)) continue;
    app.addContentTypeParser(type, (_request, _payload, done) =>
      done(new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(type), undefined),
    );
  }
}

/** A Host header worth echoing: a DNS name or address, with an optional port. */
const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * The origin this request reached the API at, for the served spec's `servers`: "Try it out"
 * then works on any port and behind a proxy. Fastify reads X-Forwarded-Proto/Host only from
 * the proxies named in RELAYPLANE_TRUST_PROXY; an odd Host gives the spec's relative `/`.
 */
export function requestOrigin(request: FastifyRequest): string | null {
  const protocol = request.protocol;
  const host = request.host;
  if ((protocol !== 'http' && protocol !== 'https') || !HOST.test(host)) return null;
  return `${protocol}://${host}`;
}

function withServerOf(request: FastifyRequest, document: Record<string, unknown>): Record<string, unknown> {
  const origin = requestOrigin(request);
  // A shallow copy: the stored document is shared by every request.
  return origin === null
    ? document
    : { ...document, servers: [{ url: origin, description: 'The Relayplane API that served this document.' }] };
}

export interface OpenApiOptions {
  handlers: OperationHandlers;
}

/**
 * Spec first: routes, their validation and serialization schemas all come from openapi.yaml
 * (through fastify-openapi-glue); this module adds the spec's security requirement as an
 * onRequest hook so authentication runs before the body is read, and runs in-place writes
 * without If-Match again when they lose an optimistic race.
 */
async function openapiPlugin(app: FastifyInstance, options: OpenApiOptions) {
  const { text, spec } = loadSpec();
  const operations = new Map(specOperations(spec).map((operation) => [operation.operationId, operation]));
  const handlers = options.handlers as Record<string, RouteHandlerMethod | undefined>;
  const rereadOnStaleWrite = staleWriteRetrier();

  refuseOtherMediaTypes(app, spec);
  await app.register(openapiGlue, {
    specification: structuredClone(spec),
    operationResolver: (operationId: string) => {
      const given = handlers[operationId];
      if (given === undefined) throw new Error(`openapi.yaml operation ${operationId} has no handler`);
      const operation = operations.get(operationId);
      const handler = operation !== undefined && WRITES.has(operation.method) ? rereadOnStaleWrite(given) : given;
      const scopes = operation?.scopes ?? null;
      // Route options without method/url are what the glue expects; its typings ask for a full route.
      return (scopes === null ? { handler } : { handler, onRequest: app.requireScopes(scopes) }) as never;
    },
  });

  app.get('/openapi.yaml', { schema: { hide: true } }, async (_request, reply) =>
    reply.type('application/yaml; charset=utf-8').send(text),
  );
  await app.register(swagger, { mode: 'static', specification: { document: structuredClone(spec) as never } });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    transformSpecificationClone: false,
    transformSpecification: (document, request) => withServerOf(request, document),
  });
}

export default fp(openapiPlugin, {
  name: 'openapi',
  fastify: '5.x',
  dependencies: ['auth', 'errors', 'strict-requests'],
});
