-- CreateTable
CREATE TABLE "config_changes" (
    "id" BIGSERIAL NOT NULL,
    "txid" xid8 NOT NULL DEFAULT pg_current_xact_id(),
    "table_name" TEXT NOT NULL,
    "row_id" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "config_changes_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "config_change_log_state" (
    "id" INTEGER NOT NULL DEFAULT 1,
    "pruned_through" xid8 NOT NULL DEFAULT '0'::xid8,

    CONSTRAINT "config_change_log_state_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "config_changes_txid_idx" ON "config_changes"("txid");

-- CreateIndex
CREATE INDEX "config_changes_created_at_idx" ON "config_changes"("created_at");

-- Change log (triggers not modelled by Prisma): every row a statement writes to a table the
-- compiler reads is logged with its transaction id, so a loader can read only what committed
-- since its previous snapshot (pg_visible_in_snapshot). Statement triggers with transition tables:
-- one INSERT ... SELECT per statement, so a bulk write of 100,000 rows stays one statement.
INSERT INTO "config_change_log_state" ("id", "pruned_through") VALUES (1, '0');

-- One function for every table and operation: PL/pgSQL plans each statement when it first runs,
-- per trigger, so the branches naming a transition table the trigger lacks are never planned.
CREATE FUNCTION "relayplane_log_config_change"() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO "config_changes" ("table_name", "row_id") SELECT TG_TABLE_NAME, "id"::text FROM "new_rows";
  ELSIF TG_OP = 'UPDATE' THEN
    -- Both sides: an update of the id itself removes one row and adds another.
    INSERT INTO "config_changes" ("table_name", "row_id")
      SELECT TG_TABLE_NAME, "id" FROM (SELECT "id"::text FROM "old_rows" UNION SELECT "id"::text FROM "new_rows") AS "ids"("id");
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO "config_changes" ("table_name", "row_id") SELECT TG_TABLE_NAME, "id"::text FROM "old_rows";
  ELSE
    -- TRUNCATE: no transition table; NULL stands for every row of the table.
    INSERT INTO "config_changes" ("table_name", "row_id") VALUES (TG_TABLE_NAME, NULL);
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- A transition table may not be shared by several events in one trigger, hence one trigger per
-- event: <table>_log_insert, _log_update, _log_delete and _log_truncate on each of the six tables.
DO $$
DECLARE
  logged text;
BEGIN
  FOREACH logged IN ARRAY ARRAY['tenants', 'domains', 'relays', 'relay_credentials', 'destination_policies', 'settings'] LOOP
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS "new_rows" '
      'FOR EACH STATEMENT EXECUTE FUNCTION "relayplane_log_config_change"()', logged || '_log_insert', logged);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING OLD TABLE AS "old_rows" NEW TABLE AS "new_rows" '
      'FOR EACH STATEMENT EXECUTE FUNCTION "relayplane_log_config_change"()', logged || '_log_update', logged);
    EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS "old_rows" '
      'FOR EACH STATEMENT EXECUTE FUNCTION "relayplane_log_config_change"()', logged || '_log_delete', logged);
    EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %I '
      'FOR EACH STATEMENT EXECUTE FUNCTION "relayplane_log_config_change"()', logged || '_log_truncate', logged);
  END LOOP;
END;
$$;
