import type { FastifyRequest, RouteHandlerMethod } from 'fastify';
import { CONTENTION_RETRY_AFTER_SECONDS } from '../db/errors.js';
import { PreconditionFailedError, ServiceUnavailableError } from '../lib/errors.js';

/** Runs of one write that lost the optimistic race each time before it is answered 503. */
export const STALE_WRITE_ATTEMPTS = 10;

/** Did the client make its write conditional (`If-Match: "3"`; `*` only asks that the resource exist)? */
function conditional(request: FastifyRequest): boolean {
  const ifMatch = request.headers['if-match'];
  return ifMatch !== undefined && ifMatch.trim() !== '*';
}

/** One at a time per key, in arrival order. */
function keyedQueue() {
  const tails = new Map<string, Promise<void>>();
  return async function inTurn<T>(key: string, run: () => Promise<T>): Promise<T> {
    const previous = tails.get(key) ?? Promise.resolve();
    let done!: () => void;
    const tail = previous.then(() => new Promise<void>((resolve) => (done = resolve)));
    tails.set(key, tail);
    await previous;
    try {
      return await run();
    } finally {
      done();
      if (tails.get(key) === tail) tails.delete(key);
    }
  };
}

/**
 * Services write with the version they read and refuse (412) when another write came between.
 * That is the answer for a client that sent If-Match; one that did not asked for its change to
 * be applied, so the handler runs again on a fresh read (a 412 always means nothing was written).
 * The runs after a lost race take turns per path, so writers racing on one resource in this
 * process cannot keep beating each other. Bounded: a resource changing faster than that (writers
 * in other processes) is answered 503, never 412.
 */
export function staleWriteRetrier() {
  const inTurn = keyedQueue();
  return (handler: RouteHandlerMethod): RouteHandlerMethod =>
    async function rereading(this: ThisParameterType<RouteHandlerMethod>, request, reply) {
      const run = () => handler.call(this, request, reply);
      try {
        return await run();
      } catch (error) {
        if (!(error instanceof PreconditionFailedError) || conditional(request)) throw error;
      }
      const path = request.url.split('?')[0] ?? request.url;
      return inTurn(path, async () => {
        for (let attempt = 2; ; attempt++) {
          try {
            return await run();
          } catch (error) {
            if (!(error instanceof PreconditionFailedError)) throw error;
            if (attempt >= STALE_WRITE_ATTEMPTS) {
              throw new ServiceUnavailableError(
                'the resource is changing too fast to apply this write: retry shortly',
                {},
                CONTENTION_RETRY_AFTER_SECONDS,
              );
            }
          }
        }
      });
    } as RouteHandlerMethod;
}
