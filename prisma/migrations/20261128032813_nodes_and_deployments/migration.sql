-- CreateEnum
CREATE TYPE "deployment_reason" AS ENUM ('change', 'reconcile', 'manual');

-- CreateEnum
CREATE TYPE "deployment_state" AS ENUM ('pending', 'running', 'succeeded', 'partial', 'failed');

-- CreateEnum
CREATE TYPE "node_deployment_state" AS ENUM ('pending', 'running', 'live', 'unchanged', 'failed', 'rolled_back', 'skipped');

-- AlterEnum
ALTER TYPE "credential_status" ADD VALUE 'retiring';

-- CreateTable
CREATE TABLE "nodes" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "ssh_host" TEXT NOT NULL,
    "ssh_port" INTEGER NOT NULL DEFAULT 22,
    "ssh_user" TEXT NOT NULL DEFAULT 'root',
    "host_key" TEXT NOT NULL,
    "config_dir" TEXT NOT NULL DEFAULT '/etc/postfix',
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "live_version" TEXT,
    "drift_detected" BOOLEAN NOT NULL DEFAULT false,
    "last_deployed_at" TIMESTAMPTZ(3),
    "last_error" TEXT,
    "last_check_at" TIMESTAMPTZ(3),
    "version" INTEGER NOT NULL DEFAULT 1,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "nodes_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "deployments" (
    "id" UUID NOT NULL,
    "version" TEXT NOT NULL,
    "reason" "deployment_reason" NOT NULL,
    "state" "deployment_state" NOT NULL DEFAULT 'pending',
    "requested_by" TEXT,
    "credential_ids" UUID[],
    "error" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "started_at" TIMESTAMPTZ(3),
    "finished_at" TIMESTAMPTZ(3),

    CONSTRAINT "deployments_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "node_deployments" (
    "id" UUID NOT NULL,
    "deployment_id" UUID NOT NULL,
    "node_id" UUID,
    "node_name" TEXT NOT NULL,
    "state" "node_deployment_state" NOT NULL DEFAULT 'pending',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "previous_version" TEXT,
    "started_at" TIMESTAMPTZ(3),
    "finished_at" TIMESTAMPTZ(3),
    "error" TEXT,
    "steps" JSONB,

    CONSTRAINT "node_deployments_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "nodes_name_key" ON "nodes"("name");

-- CreateIndex
CREATE INDEX "deployments_created_at_id_idx" ON "deployments"("created_at" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "deployments_state_created_at_idx" ON "deployments"("state", "created_at");

-- CreateIndex
CREATE INDEX "node_deployments_node_id_started_at_idx" ON "node_deployments"("node_id", "started_at");

-- CreateIndex
CREATE UNIQUE INDEX "node_deployments_deployment_id_node_id_key" ON "node_deployments"("deployment_id", "node_id");

-- AddForeignKey
ALTER TABLE "node_deployments" ADD CONSTRAINT "node_deployments_deployment_id_fkey" FOREIGN KEY ("deployment_id") REFERENCES "deployments"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "node_deployments" ADD CONSTRAINT "node_deployments_node_id_fkey" FOREIGN KEY ("node_id") REFERENCES "nodes"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- Config change notification (not modelled by Prisma): every committed write to a table the
-- compiler reads sends NOTIFY relayplane_config. NOTIFY is transactional: delivered on commit,
-- never for a rolled-back change, once per transaction and payload, to every listening process.
CREATE FUNCTION "relayplane_notify_config_changed"() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('relayplane_config', TG_TABLE_NAME);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER "tenants_config_changed" AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "tenants"
  FOR EACH STATEMENT EXECUTE FUNCTION "relayplane_notify_config_changed"();
CREATE TRIGGER "domains_config_changed" AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "domains"
  FOR EACH STATEMENT EXECUTE FUNCTION "relayplane_notify_config_changed"();
CREATE TRIGGER "relays_config_changed" AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "relays"
  FOR EACH STATEMENT EXECUTE FUNCTION "relayplane_notify_config_changed"();
CREATE TRIGGER "relay_credentials_config_changed" AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "relay_credentials"
  FOR EACH STATEMENT EXECUTE FUNCTION "relayplane_notify_config_changed"();
CREATE TRIGGER "destination_policies_config_changed" AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "destination_policies"
  FOR EACH STATEMENT EXECUTE FUNCTION "relayplane_notify_config_changed"();
CREATE TRIGGER "settings_config_changed" AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "settings"
  FOR EACH STATEMENT EXECUTE FUNCTION "relayplane_notify_config_changed"();
