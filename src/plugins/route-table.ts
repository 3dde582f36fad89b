import type { FastifyInstance } from 'fastify';

export interface RouteTable {
  /** Path pattern (as a regular expression) → the methods served there. */
  readonly patterns: Map<string, { match: RegExp; methods: Set<string> }>;
}

function matcherOf(url: string): RegExp {
  const source = url
    .split('/')
    .map((segment) => {
      // The router matches an empty parameter (`/v1/relays//credentials`) and lets its schema refuse it.
      if (segment.startsWith(':')) return '[^/]*';
      if (segment === '*') return '.*';
      return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('/');
  return new RegExp(`^${source}$`);
}

/** Every route registered after this call, by path pattern, so a wrong method can be told from a wrong path. */
export function routeTable(app: FastifyInstance): RouteTable {
  const patterns: RouteTable['patterns'] = new Map();
  app.addHook('onRoute', (route) => {
    let entry = patterns.get(route.url);
    if (entry === undefined) patterns.set(route.url, (entry = { match: matcherOf(route.url), methods: new Set() }));
    for (const method of Array.isArray(route.method) ? route.method : [route.method])
      entry.methods.add(method.toUpperCase());
    if (entry.methods.has('GET')) entry.methods.add('HEAD');
  });
  return { patterns };
}

/** The methods some route serves at this request URL (empty when no route has this path). */
export function allowedMethods(table: RouteTable, url: string): string[] {
  const path = url.split('?')[0] ?? '';
  const methods = new Set<string>();
  for (const { match, methods: served } of table.patterns.values()) {
    if (match.test(path)) for (const method of served) methods.add(method);
  }
  return [...methods].sort();
}
