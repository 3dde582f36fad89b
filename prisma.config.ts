import { defineConfig } from 'prisma/config';

// Used by the prisma CLI (generate; migrate deploy on machines that can fetch the native engine).
// Relayplane itself applies migrations with the WebAssembly engine: see src/db/migrate.ts.
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://localhost:5432/relayplane' },
});
