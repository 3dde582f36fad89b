import AjvCompiler, { type Options } from '@fastify/ajv-compiler';
import type { FastifyInstance, FastifyRequest, FastifyServerOptions } from 'fastify';
import fp from 'fastify-plugin';
import { type FieldProblem, ValidationError } from '../lib/errors.js';

/** The only request body media type the API reads (every requestBody in openapi.yaml). */
export const ACCEPTED_BODY_TYPE = 'application/json';

/**
 * Characters no stored value may hold: C0 and C1 controls (NUL breaks PostgreSQL text, CR/LF
 * and TAB break Postfix tables and log lines), DEL, the Unicode line and paragraph separators
 * (line breaks to JavaScript and many log viewers) and lone surrogates (not encodable as UTF-8,
 * so they would be stored altered).
 */
const FORBIDDEN = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]|\p{Cs}/u;

type AjvOptions = { customOptions?: Options; plugins?: unknown[]; onCreate?: unknown };
type ValidatorFactory = NonNullable<
  NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']
>['buildValidator'];

/**
 * Ajv validators per request part: query strings, path parameters and headers are text, so
 * their values are coerced to the schema's types ("?limit=5"); JSON bodies carry types of their
 * own and are never coerced (`"secret": true` is a 400, not the password "true").
 */
export function partValidators(): ValidatorFactory {
  const build = AjvCompiler();
  return (externalSchemas, options) => {
    const given = (options ?? {}) as AjvOptions;
    // The app's options (never JTD mode) with the coercion each part needs.
    const withCoercion = (coerceTypes: 'array' | false) =>
      ({ ...given, customOptions: { ...given.customOptions, coerceTypes } }) as Parameters<typeof build>[1];
    const coercing = build(externalSchemas, withCoercion('array'));
    const strict = build(externalSchemas, withCoercion(false));
    return (route) => (route.httpPart === 'body' ? strict(route) : coercing(route));
  };
}

/** Every string (and object key) in a parsed value holding a forbidden character, as field problems. */
function forbiddenCharacters(part: string, value: unknown, path = '', found: FieldProblem[] = []): FieldProblem[] {
  if (found.length >= 20) return found;
  if (typeof value === 'string') {
    if (FORBIDDEN.test(value))
      found.push({
        field: `${part}${path}`,
        message:
          'must not contain control characters, line or paragraph separators (U+2028, U+2029) or lone surrogates',
      });
  } else if (Array.isArray(value)) {
    value.forEach((item, index) => forbiddenCharacters(part, item, `${path}/${index}`, found));
  } else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      const pointer = `${path}/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`;
      if (FORBIDDEN.test(key))
        found.push({ field: `${part}${pointer}`, message: 'is a property name with control characters' });
      else forbiddenCharacters(part, item, pointer, found);
    }
  }
  return found;
}

/** Header values the route's schema declares (Idempotency-Key, If-Match): those reach the service. */
function declaredHeaders(request: FastifyRequest): Record<string, unknown> {
  const declared =
    (request.routeOptions.schema?.headers as { properties?: Record<string, unknown> } | undefined)?.properties ?? {};
  return Object.fromEntries(
    Object.keys(declared).map((name) => [name.toLowerCase(), request.headers[name.toLowerCase()]]),
  );
}

/**
 * Requests are read strictly, once, for every route: bodies only as application/json (any other
 * media type is a 415 before anything is parsed), each body validated against its schema
 * whatever media type it was labelled with, and no control character in any body, query,
 * path or declared header value.
 */
function strictRequestsPlugin(app: FastifyInstance) {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(ACCEPTED_BODY_TYPE, { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'));

  // fastify-openapi-glue hands Fastify a body schema per media type, which Fastify applies only to
  // a request labelled with that type: one schema for the body, whatever its label.
  app.addHook('onRoute', (route) => {
    const body = route.schema?.body as { content?: Record<string, { schema?: unknown }> } | undefined;
    if (route.schema === undefined || body?.content === undefined) return;
    const json = body.content[ACCEPTED_BODY_TYPE]?.schema;
    if (json === undefined)
      throw new Error(`${route.method} ${route.url}: a request body must be declared as ${ACCEPTED_BODY_TYPE}`);
    route.schema.body = json;
  });

  app.addHook('preValidation', async (request) => {
    const problems = [
      ...forbiddenCharacters('params', request.params),
      ...forbiddenCharacters('querystring', request.query),
      ...forbiddenCharacters('headers', declaredHeaders(request)),
      ...forbiddenCharacters('body', request.body),
    ];
    if (problems.length > 0) {
      throw new ValidationError(problems.map((problem) => `${problem.field} ${problem.message}`).join('; '), problems);
    }
  });
}

export default fp(strictRequestsPlugin, { name: 'strict-requests', fastify: '5.x', dependencies: ['errors'] });
