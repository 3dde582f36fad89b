import type { FastifyReply, FastifyRequest } from 'fastify';
import type { components, operations } from '../generated/api.js';

/** Types for handlers, all derived from openapi.yaml through openapi-typescript. */
export type OperationId = keyof operations;
export type Schemas = components['schemas'];

type JsonContent<T> = T extends { content: { 'application/json': infer Body } } ? Body : never;
type Part<Op, Key extends string> = Op extends { parameters: infer Parameters }
  ? Parameters extends { [K in Key]?: infer Value }
    ? [NonNullable<Value>] extends [never]
      ? unknown
      : NonNullable<Value>
    : unknown
  : unknown;

export type RequestBody<Id extends OperationId> = operations[Id] extends { requestBody: infer Body }
  ? JsonContent<NonNullable<Body>>
  : unknown;
export type Query<Id extends OperationId> = Part<operations[Id], 'query'>;
export type Params<Id extends OperationId> = Part<operations[Id], 'path'>;
export type Headers<Id extends OperationId> = Part<operations[Id], 'header'>;
export type ResponseBody<Id extends OperationId, Status extends number> = operations[Id] extends {
  responses: Record<Status, infer Response>;
}
  ? JsonContent<Response>
  : never;

export type OperationRequest<Id extends OperationId> = FastifyRequest<{
  Body: RequestBody<Id>;
  Querystring: Query<Id>;
  Params: Params<Id>;
  Headers: Headers<Id>;
}>;

export type OperationHandler<Id extends OperationId> = (
  request: OperationRequest<Id>,
  reply: FastifyReply,
) => Promise<unknown>;

/** A resource's handlers, keyed by the operationId the spec gives them. */
export type OperationHandlers = { [Id in OperationId]?: OperationHandler<Id> };
