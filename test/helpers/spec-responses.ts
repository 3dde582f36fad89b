import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule, { type FormatsPlugin } from 'ajv-formats';
import { afterAll, afterEach } from 'vitest';
import { loadSpec } from '../../src/plugins/openapi.js';

// ajv-formats is CommonJS with an ES default export: unwrap it for Node's ESM loader.
const addFormats = (addFormatsModule as unknown as { default: FormatsPlugin }).default;

/**
 * Every response a test app sends is checked against openapi.yaml: the status is declared for the
 * operation, the content type is one the spec names for it, required headers are present and the
 * body validates against the schema. Violations fail the test during which they happened.
 */

type Json = Record<string, unknown>;
interface ResponseObject {
  $ref?: string;
  content?: Record<string, { schema?: Json }>;
  headers?: Record<string, { $ref?: string; required?: boolean; schema?: Json }>;
}
interface PathItem {
  [method: string]: { operationId: string; responses: Record<string, ResponseObject> } | unknown;
}

const SPEC_ID = 'openapi.yaml';

export interface ResponseSeen {
  method: string;
  /** The matched route (`/v1/tenants/:tenantId`), undefined when no route matched. */
  route: string | undefined;
  url: string;
  status: number;
  contentType: string | undefined;
  headers: Record<string, unknown>;
  body: string;
}

/** Escapes one JSON pointer segment for use in a URI fragment. */
const segment = (value: string) => encodeURIComponent(value.replaceAll('~', '~0').replaceAll('/', '~1'));

export function createSpecChecker() {
  const { spec: parsed } = loadSpec();
  const spec = parsed as unknown as { paths: Record<string, PathItem>; components: Json };
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
  addFormats(ajv);
  ajv.addSchema(spec as unknown as Json, SPEC_ID);
  const compiled = new Map<string, ValidateFunction>();
  // As the router: a parameter may be empty (`/v1/relays//credentials` reaches its route).
  const pathTemplates = Object.keys(spec.paths).map((template) => ({
    template,
    regex: new RegExp(
      `^${template
        .split(/\{[^}]+\}/)
        .map((part) => part.replace(/[.*+?^$()|[\]\\]/g, '\\$&'))
        .join('[^/]*')}$`,
    ),
  }));

  function resolve<T extends { $ref?: string }>(value: T): { object: T; pointer: string[] } | null {
    if (value.$ref === undefined) return null;
    const parts = value.$ref
      .replace(/^#\//, '')
      .split('/')
      .map((part) => part.replaceAll('~1', '/').replaceAll('~0', '~'));
    let node: unknown = spec;
    for (const part of parts) node = (node as Json | undefined)?.[part];
    return node === undefined ? null : { object: node as T, pointer: parts };
  }

  function validatorAt(pointer: string[]): ValidateFunction {
    const ref = `${SPEC_ID}#/${pointer.map(segment).join('/')}`;
    let validate = compiled.get(ref);
    if (validate === undefined) {
      validate = ajv.compile({ $ref: ref });
      compiled.set(ref, validate);
    }
    return validate;
  }

  /** The declared response (and where it lives) for an operation and status, or for a path without that method. */
  function declared(seen: ResponseSeen): { response: ResponseObject; pointer: string[]; where: string } | string {
    const method = seen.method.toLowerCase();
    const path =
      seen.route?.replace(/:([A-Za-z0-9_]+)/g, '{$1}') ??
      pathTemplates.find((item) => item.regex.test(seen.url.split('?')[0]!))?.template;
    const item = path === undefined ? undefined : spec.paths[path];
    const operation = item?.[method] as { operationId: string; responses: Record<string, ResponseObject> } | undefined;
    let responses: Record<string, ResponseObject>;
    let base: string[];
    let where: string;
    if (operation !== undefined && path !== undefined) {
      responses = operation.responses;
      base = ['paths', path, method, 'responses'];
      where = `${operation.operationId} (${seen.method} ${path})`;
    } else {
      // No operation: an unknown path is a 404, a known path with another method a 405; either may
      // also be a malformed URL (400) or an over-long path segment (414).
      const shared: Record<number, string> = {
        [item === undefined ? 404 : 405]: item === undefined ? 'NotFound' : 'MethodNotAllowed',
        400: 'BadRequest',
        414: 'UriTooLong',
      };
      const name = shared[seen.status];
      if (name === undefined)
        return `${seen.method} ${seen.url} has no operation in openapi.yaml and answered ${seen.status}, not ${Object.keys(shared).join(' or ')}`;
      const response = (spec.components.responses as Record<string, ResponseObject> | undefined)?.[name];
      if (response === undefined) return `components/responses/${name} is missing from openapi.yaml`;
      return {
        response,
        pointer: ['components', 'responses', name],
        where: `${seen.method} ${seen.url.slice(0, 80)} (no operation)`,
      };
    }
    const key = [String(seen.status), `${String(seen.status)[0]}XX`, 'default'].find(
      (candidate) => responses[candidate] !== undefined,
    );
    if (key === undefined) return `${where} answered ${seen.status}, which it does not declare`;
    const response = responses[key]!;
    const target = resolve(response);
    return target === null
      ? { response, pointer: [...base, key], where }
      : { response: target.object, pointer: target.pointer, where };
  }

  function headerProblems(response: ResponseObject, seen: ResponseSeen): string[] {
    const problems: string[] = [];
    for (const [name, header] of Object.entries(response.headers ?? {})) {
      const definition = header.$ref === undefined ? header : (resolve(header)?.object ?? header);
      const value = seen.headers[name.toLowerCase()];
      if (value === undefined) {
        if (definition.required === true) problems.push(`header ${name} is required but missing`);
        continue;
      }
      if (definition.schema?.type === 'integer' && !/^\d+$/.test(String(value)))
        problems.push(`header ${name} is ${JSON.stringify(value)}, not an integer`);
    }
    return problems;
  }

  /** The problems with one response; empty when it matches the spec. */
  function check(seen: ResponseSeen): string[] {
    const found = declared(seen);
    if (typeof found === 'string') return [found];
    const { response, pointer, where } = found;
    const problems = headerProblems(response, seen).map((problem) => `${where} ${seen.status}: ${problem}`);
    const content = response.content;
    if (content === undefined || Object.keys(content).length === 0) {
      if (seen.body !== '')
        problems.push(`${where} ${seen.status} declares no body but sent ${seen.body.length} bytes`);
      return problems;
    }
    const mediaType = seen.contentType?.split(';')[0]!.trim().toLowerCase();
    if (mediaType === undefined || content[mediaType] === undefined) {
      problems.push(
        `${where} ${seen.status} has content type ${String(seen.contentType)}, not one of ${Object.keys(content).join(', ')}`,
      );
      return problems;
    }
    if (!/[/+]json$/.test(mediaType) || content[mediaType].schema === undefined) return problems;
    let body: unknown;
    try {
      body = JSON.parse(seen.body);
    } catch {
      return [...problems, `${where} ${seen.status} body is not JSON: ${seen.body.slice(0, 200)}`];
    }
    const validate = validatorAt([...pointer, 'content', mediaType, 'schema']);
    if (!validate(body)) {
      const errors = (validate.errors ?? [])
        .slice(0, 5)
        .map((error) => `${error.instancePath || '/'} ${error.message ?? ''} ${JSON.stringify(error.params)}`);
      problems.push(
        `${where} ${seen.status} body does not match the spec: ${errors.join('; ')}; body: ${seen.body.slice(0, 300)}`,
      );
    }
    // What a schema cannot say: a problem's type is its code under the project's URN.
    const problem = body as { type?: unknown; code?: unknown };
    if (mediaType === 'application/problem+json' && problem.type !== `urn:relayplane:problem:${String(problem.code)}`) {
      problems.push(
        `${where} ${seen.status} problem type ${String(problem.type)} does not end in its code ${String(problem.code)}`,
      );
    }
    return problems;
  }

  /** Whether a JSON request body is one the operation's schema admits. */
  function requestBodyValid(path: string, method: string, body: unknown): boolean {
    return validatorAt(['paths', path, method.toLowerCase(), 'requestBody', 'content', 'application/json', 'schema'])(
      body,
    );
  }

  return { check, requestBodyValid };
}

let checker: ReturnType<typeof createSpecChecker> | undefined;
const violations: string[] = [];

/** One checker per test file: compiling a schema once serves every response of the file. */
export function specChecker(): ReturnType<typeof createSpecChecker> {
  checker ??= createSpecChecker();
  return checker;
}

/** Records the problems of one response; the test (or hook) it happened in fails after it ends. */
export function recordResponse(seen: ResponseSeen): void {
  for (const problem of specChecker().check(seen)) violations.push(problem);
}

/** Hands the violations recorded so far to the caller (which reports them its own way) instead of failing the test. */
export function takeViolations(): string[] {
  return violations.splice(0);
}

function failOnViolations() {
  if (violations.length === 0) return;
  const found = violations.splice(0);
  throw new Error(`${found.length} response(s) do not match openapi.yaml:\n- ${[...new Set(found)].join('\n- ')}`);
}

// Registered once per test file (this module is loaded per file): responses sent during a test
// fail that test; those sent in beforeAll/afterAll hooks fail the file.
afterEach(failOnViolations);
afterAll(failOnViolations);
