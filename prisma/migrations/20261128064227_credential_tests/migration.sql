-- CreateTable
CREATE TABLE "credential_tests" (
    "id" UUID NOT NULL,
    "credential_id" UUID NOT NULL,
    "tested_at" TIMESTAMPTZ(3) NOT NULL,
    "ok" BOOLEAN NOT NULL,
    "stage" TEXT NOT NULL,
    "detail" TEXT NOT NULL,
    "tls_protocol" TEXT,
    "duration_ms" INTEGER NOT NULL,

    CONSTRAINT "credential_tests_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "credential_tests_credential_id_tested_at_idx" ON "credential_tests"("credential_id", "tested_at");

-- AddForeignKey
ALTER TABLE "credential_tests" ADD CONSTRAINT "credential_tests_credential_id_fkey" FOREIGN KEY ("credential_id") REFERENCES "relay_credentials"("id") ON DELETE CASCADE ON UPDATE CASCADE;
