-- CreateEnum
CREATE TYPE "tenant_status" AS ENUM ('active', 'suspended');

-- CreateEnum
CREATE TYPE "domain_status" AS ENUM ('pending', 'verified', 'degraded', 'failed', 'disabled');

-- CreateEnum
CREATE TYPE "domain_route" AS ENUM ('relay', 'direct');

-- CreateEnum
CREATE TYPE "relay_tls" AS ENUM ('starttls', 'implicit', 'opportunistic');

-- CreateEnum
CREATE TYPE "credential_status" AS ENUM ('staged', 'active', 'retired');

-- CreateEnum
CREATE TYPE "tls_requirement" AS ENUM ('may', 'encrypt', 'verify', 'secure');

-- CreateTable
CREATE TABLE "tenants" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "slug" TEXT NOT NULL,
    "status" "tenant_status" NOT NULL DEFAULT 'active',
    "external_ref" TEXT,
    "allow_direct_delivery" BOOLEAN NOT NULL DEFAULT false,
    "default_concurrency" INTEGER,
    "default_rate_delay_seconds" INTEGER,
    "default_recipients_per_message" INTEGER,
    "version" INTEGER NOT NULL DEFAULT 1,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "tenants_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "domains" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "status" "domain_status" NOT NULL DEFAULT 'pending',
    "compile_override" BOOLEAN NOT NULL DEFAULT false,
    "route" "domain_route" NOT NULL DEFAULT 'relay',
    "relay_id" UUID,
    "fallback_relay_id" UUID,
    "concurrency" INTEGER,
    "rate_delay_seconds" INTEGER,
    "recipients_per_message" INTEGER,
    "version" INTEGER NOT NULL DEFAULT 1,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "domains_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "relays" (
    "id" UUID NOT NULL,
    "tenant_id" UUID,
    "name" TEXT NOT NULL,
    "host" TEXT NOT NULL,
    "port" INTEGER NOT NULL,
    "tls" "relay_tls" NOT NULL,
    "verify" BOOLEAN NOT NULL DEFAULT false,
    "spf_include" TEXT,
    "notes" TEXT,
    "concurrency" INTEGER,
    "rate_delay_seconds" INTEGER,
    "recipients_per_message" INTEGER,
    "connection_reuse_seconds" INTEGER,
    "version" INTEGER NOT NULL DEFAULT 1,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "relays_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "relay_credentials" (
    "id" UUID NOT NULL,
    "relay_id" UUID NOT NULL,
    "domain_id" UUID,
    "tenant_id" UUID,
    "username" TEXT NOT NULL,
    "secret_ciphertext" BYTEA NOT NULL,
    "secret_nonce" BYTEA NOT NULL,
    "secret_key_id" TEXT NOT NULL,
    "fingerprint" TEXT NOT NULL,
    "status" "credential_status" NOT NULL DEFAULT 'staged',
    "activated_at" TIMESTAMPTZ(3),
    "retired_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "relay_credentials_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "destination_policies" (
    "id" UUID NOT NULL,
    "pattern" TEXT NOT NULL,
    "concurrency" INTEGER,
    "rate_delay_seconds" INTEGER,
    "tls" "tls_requirement",
    "version" INTEGER NOT NULL DEFAULT 1,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "destination_policies_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "settings" (
    "id" INTEGER NOT NULL DEFAULT 1,
    "default_concurrency" INTEGER NOT NULL DEFAULT 20,
    "default_rate_delay_seconds" INTEGER NOT NULL DEFAULT 0,
    "inet_protocols" TEXT NOT NULL DEFAULT 'all',
    "address_preference" TEXT NOT NULL DEFAULT 'any',
    "maximal_queue_lifetime_seconds" INTEGER NOT NULL DEFAULT 432000,
    "bounce_queue_lifetime_seconds" INTEGER NOT NULL DEFAULT 432000,
    "minimal_backoff_seconds" INTEGER NOT NULL DEFAULT 300,
    "maximal_backoff_seconds" INTEGER NOT NULL DEFAULT 4000,
    "version" INTEGER NOT NULL DEFAULT 1,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "settings_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "idempotency_records" (
    "actor_key_id" TEXT NOT NULL,
    "key" TEXT NOT NULL,
    "request_hash" TEXT NOT NULL,
    "response_status" INTEGER,
    "response_body" JSONB,
    "response_headers" JSONB,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "idempotency_records_pkey" PRIMARY KEY ("actor_key_id","key")
);

-- CreateIndex
CREATE UNIQUE INDEX "tenants_slug_key" ON "tenants"("slug");

-- CreateIndex
CREATE UNIQUE INDEX "tenants_external_ref_key" ON "tenants"("external_ref");

-- CreateIndex
CREATE UNIQUE INDEX "domains_name_key" ON "domains"("name");

-- CreateIndex
CREATE INDEX "domains_tenant_id_id_idx" ON "domains"("tenant_id", "id");

-- CreateIndex
CREATE INDEX "domains_relay_id_idx" ON "domains"("relay_id");

-- CreateIndex
CREATE INDEX "domains_fallback_relay_id_idx" ON "domains"("fallback_relay_id");

-- CreateIndex
CREATE INDEX "relays_tenant_id_id_idx" ON "relays"("tenant_id", "id");

-- CreateIndex
CREATE INDEX "relay_credentials_relay_id_domain_id_status_idx" ON "relay_credentials"("relay_id", "domain_id", "status");

-- CreateIndex
CREATE INDEX "relay_credentials_tenant_id_idx" ON "relay_credentials"("tenant_id");

-- CreateIndex
CREATE INDEX "relay_credentials_domain_id_idx" ON "relay_credentials"("domain_id");

-- CreateIndex
CREATE UNIQUE INDEX "destination_policies_pattern_key" ON "destination_policies"("pattern");

-- CreateIndex
CREATE INDEX "idempotency_records_created_at_idx" ON "idempotency_records"("created_at");

-- AddForeignKey
ALTER TABLE "domains" ADD CONSTRAINT "domains_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "domains" ADD CONSTRAINT "domains_relay_id_fkey" FOREIGN KEY ("relay_id") REFERENCES "relays"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "domains" ADD CONSTRAINT "domains_fallback_relay_id_fkey" FOREIGN KEY ("fallback_relay_id") REFERENCES "relays"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "relays" ADD CONSTRAINT "relays_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "relay_credentials" ADD CONSTRAINT "relay_credentials_relay_id_fkey" FOREIGN KEY ("relay_id") REFERENCES "relays"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "relay_credentials" ADD CONSTRAINT "relay_credentials_domain_id_fkey" FOREIGN KEY ("domain_id") REFERENCES "domains"("id") ON DELETE CASCADE ON UPDATE CASCADE;
