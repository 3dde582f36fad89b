import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { databaseProblem } from '../db/errors.js';
import { AppError, type FieldProblem, RateLimitedError, ServiceUnavailableError } from '../lib/errors.js';
import { allowedMethods, routeTable } from './route-table.js';
import { ACCEPTED_BODY_TYPE } from './strict-requests.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
const PROBLEM_TYPE_PREFIX = 'urn:relayplane:problem:';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  requestId: string;
  code: string;
  errors?: FieldProblem[];
  [extension: string]: unknown;
}

const STATUS_TITLES: Record<number, string> = {
  400: 'Bad request',
  401: 'Authentication required',
  403: 'Not allowed',
  404: 'Resource not found',
  405: 'Method not allowed',
  406: 'Not acceptable',
  408: 'Request timeout',
  409: 'Conflict',
  412: 'Precondition failed',
  413: 'Payload too large',
  414: 'URI too long',
  415: 'Unsupported media type',
  422: 'Unprocessable request',
  429: 'Too many requests',
  431: 'Request header fields too large',
};

/** The project's own codes for what the framework refuses; its internal codes (FST_ERR_…) never reach a client. */
const STATUS_CODES_OF_OURS: Record<number, string> = {
  400: 'bad-request',
  404: 'not-found',
  405: 'method-not-allowed',
  406: 'not-acceptable',
  408: 'request-timeout',
  413: 'payload-too-large',
  414: 'uri-too-long',
  415: 'unsupported-media-type',
  431: 'headers-too-large',
};

const FRAMEWORK_PROBLEMS: Record<string, { code: string; detail: string }> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    code: 'unsupported-media-type',
    detail: 'request bodies are accepted only as application/json',
  },
  FST_ERR_CTP_INVALID_TYPE: {
    code: 'unsupported-media-type',
    detail: 'request bodies are accepted only as application/json',
  },
  FST_ERR_CTP_EMPTY_TYPE: {
    code: 'unsupported-media-type',
    detail: 'request bodies are accepted only as application/json',
  },
  FST_ERR_CTP_BODY_TOO_LARGE: {
    code: 'payload-too-large',
    detail: 'the request body is larger than the 1 MiB this API accepts',
  },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'malformed-json', detail: 'the request body is not valid JSON' },
  FST_ERR_CTP_EMPTY_JSON_BODY: {
    code: 'malformed-json',
    detail: 'the request body is empty but labelled application/json',
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: {
    code: 'bad-request',
    detail: 'Content-Length does not match the body received',
  },
  FST_ERR_BAD_URL: { code: 'bad-request', detail: 'the request path is not a valid URL (bad percent-encoding)' },
  FST_ERR_MAX_PARAM_LENGTH: { code: 'uri-too-long', detail: 'a path segment is too long' },
};

type ProblemFields = { status: number; title: string; code: string; detail?: string; errors?: FieldProblem[] } & Record<
  string,
  unknown
>;

function sendProblem(request: FastifyRequest, reply: FastifyReply, problem: ProblemFields) {
  const body = {
    type: `${PROBLEM_TYPE_PREFIX}${problem.code}`,
    ...problem,
    instance: request.url.split('?')[0],
    requestId: request.id,
  } as Problem;
  return reply.status(problem.status).type(PROBLEM_CONTENT_TYPE).send(body);
}

/** Ajv's message, with the allowed values where it only says there are some. */
function validationMessage(
  item: NonNullable<FastifyError['validation']>[number],
  params: Record<string, unknown>,
): string {
  if (item.keyword === 'enum' && Array.isArray(params.allowedValues)) {
    return `must be one of: ${params.allowedValues.map((value) => JSON.stringify(value)).join(', ')}`;
  }
  return item.message ?? 'is invalid';
}

/** Ajv's instancePath (`/name`) plus the part of the request it validated, e.g. `body/name`. */
function fieldProblems(error: FastifyError): FieldProblem[] {
  const context = error.validationContext ?? 'request';
  return (error.validation ?? []).map((item) => {
    const params = item.params as Record<string, unknown>;
    const missing = typeof params.missingProperty === 'string' ? `/${params.missingProperty}` : '';
    const extra = typeof params.additionalProperty === 'string' ? `/${params.additionalProperty}` : '';
    const pointer = `${item.instancePath}${missing}${extra}`;
    const message = extra
      ? `${item.message ?? 'is not allowed'}: ${params.additionalProperty as string}`
      : validationMessage(item, params);
    return { field: `${context}${pointer}`, message };
  });
}

function sendAppError(request: FastifyRequest, reply: FastifyReply, error: AppError) {
  if (
    (error instanceof ServiceUnavailableError || error instanceof RateLimitedError) &&
    error.retryAfterSeconds !== undefined
  ) {
    reply.header('retry-after', String(error.retryAfterSeconds));
  }
  return sendProblem(request, reply, {
    status: error.status,
    title: error.title,
    code: error.code,
    detail: error.message,
    ...error.extra,
  });
}

/** Errors Fastify raises before a handler runs (body parsing, URL decoding) in the project's terms. */
function sendFrameworkError(request: FastifyRequest, reply: FastifyReply, error: FastifyError, status: number) {
  const known = error.code === undefined ? undefined : FRAMEWORK_PROBLEMS[error.code];
  // RFC 9110 §15.5.16: a 415 may say in Accept which media types the request could have used.
  if (status === 415) reply.header('accept', ACCEPTED_BODY_TYPE);
  return sendProblem(request, reply, {
    status,
    title: STATUS_TITLES[status] ?? STATUS_CODES[status] ?? 'Bad request',
    code: known?.code ?? STATUS_CODES_OF_OURS[status] ?? 'bad-request',
    detail: known?.detail ?? error.message,
  });
}

function sendRouteNotFound(request: FastifyRequest, reply: FastifyReply, allowed: string[]) {
  const path = request.url.split('?')[0] ?? '';
  if (allowed.length > 0) {
    reply.header('allow', allowed.join(', '));
    return sendProblem(request, reply, {
      status: 405,
      title: 'Method not allowed',
      code: 'method-not-allowed',
      detail: `${path} does not support ${request.method}; it supports ${allowed.join(', ')}`,
    });
  }
  return sendProblem(request, reply, {
    status: 404,
    title: 'Resource not found',
    code: 'route-not-found',
    detail: `No route for ${request.method} ${path}`,
  });
}

/** Fastify's `frameworkErrors` option: a malformed URL or an over-long path segment, as problem+json. */
export function frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  reply.header('x-request-id', request.id);
  return sendFrameworkError(request, reply, error, error.statusCode ?? 400);
}

/** Node's `clientError` (a request the HTTP parser refuses): answered as problem+json, then closed. */
export function clientErrorHandler(error: NodeJS.ErrnoException, socket: Socket) {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code] =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'request-timeout']
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'headers-too-large']
        : [400, 'bad-request'];
  const body = JSON.stringify({
    type: `${PROBLEM_TYPE_PREFIX}${code}`,
    title: STATUS_TITLES[status],
    status,
    code,
    detail: status === 400 ? 'the HTTP request could not be parsed' : STATUS_TITLES[status],
  });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
}

function errorsPlugin(app: FastifyInstance) {
  const routes = routeTable(app);

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof AppError) return sendAppError(request, reply, error);
    if (error.validation) {
      const errors = fieldProblems(error);
      return sendProblem(request, reply, {
        status: 400,
        title: 'Request validation failed',
        code: 'validation-failed',
        detail: errors.map((item) => `${item.field} ${item.message}`).join('; '),
        errors,
      });
    }
    const database = databaseProblem(error);
    if (database !== undefined) {
      request.log.warn({ err: error }, 'database refused the request');
      return sendAppError(request, reply, database);
    }
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) return sendFrameworkError(request, reply, error, status);
    // Server-side failures: log everything, show nothing internal.
    request.log.error({ err: error }, 'request failed');
    return sendProblem(request, reply, {
      status: status >= 500 && status < 600 ? status : 500,
      title: 'Internal server error',
      code: 'internal-error',
      detail: `The server could not complete the request. Quote request id ${request.id} when reporting it.`,
    });
  });

  app.setNotFoundHandler((request, reply) => sendRouteNotFound(request, reply, allowedMethods(routes, request.url)));

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    // An unknown path or method is answered before its body is read.
    if (request.is404) return sendRouteNotFound(request, reply, allowedMethods(routes, request.url));
  });
}

export default fp(errorsPlugin, { name: 'errors', fastify: '5.x' });
