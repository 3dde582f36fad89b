import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { databaseProblem } from '../db/errors.js';
import { AppError, type FieldProblem, ServiceUnavailableError } from '../lib/errors.js';

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
  409: 'Conflict',
  412: 'Precondition failed',
  413: 'Payload too large',
  415: 'Unsupported media type',
  422: 'Unprocessable request',
  429: 'Too many requests',
};

type ProblemFields = { status: number; title: string; code: string; detail?: string; errors?: FieldProblem[] } & Record<string, unknown>;

function sendProblem(request: FastifyRequest, reply: FastifyReply, problem: ProblemFields) {
  const body = {
    type: `${PROBLEM_TYPE_PREFIX}${problem.code}`,
    ...problem,
    instance: request.url.split('?')[0],
    requestId: request.id,
  } as Problem;
  return reply.status(problem.status).type(PROBLEM_CONTENT_TYPE).send(body);
}

/** Ajv's instancePath (`/name`) plus the part of the request it validated, e.g. `body/name`. */
function fieldProblems(error: FastifyError): FieldProblem[] {
  const context = error.validationContext ?? 'request';
  return (error.validation ?? []).map((item) => {
    const params = item.params as Record<string, unknown>;
    const missing = typeof params.missingProperty === 'string' ? `/${params.missingProperty}` : '';
    const extra = typeof params.additionalProperty === 'string' ? `/${params.additionalProperty}` : '';
    const pointer = `${item.instancePath}${missing}${extra}`;
    const message = extra ? `${item.message ?? 'is not allowed'}: ${params.additionalProperty as string}` : (item.message ?? 'is invalid');
    return { field: `${context}${pointer}`, message };
  });
}

function sendAppError(request: FastifyRequest, reply: FastifyReply, error: AppError) {
  if (error instanceof ServiceUnavailableError && error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds));
  return sendProblem(request, reply, { status: error.status, title: error.title, code: error.code, detail: error.message, ...error.extra });
}

function errorsPlugin(app: FastifyInstance) {
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
    if (status >= 400 && status < 500) {
      return sendProblem(request, reply, {
        status,
        title: STATUS_TITLES[status] ?? 'Bad request',
        code: (error.code ?? 'bad-request').toLowerCase().replaceAll('_', '-'),
        detail: error.message,
      });
    }
    // Server-side failures: log everything, show nothing internal.
    request.log.error({ err: error }, 'request failed');
    return sendProblem(request, reply, {
      status: status >= 500 && status < 600 ? status : 500,
      title: 'Internal server error',
      code: 'internal-error',
      detail: `The server could not complete the request. Quote request id ${request.id} when reporting it.`,
    });
  });

  app.setNotFoundHandler((request, reply) =>
    sendProblem(request, reply, {
      status: 404,
      title: 'Resource not found',
      code: 'route-not-found',
      detail: `No route for ${request.method} ${request.url.split('?')[0]}`,
    }),
  );

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
}

export default fp(errorsPlugin, { name: 'errors', fastify: '5.x' });
