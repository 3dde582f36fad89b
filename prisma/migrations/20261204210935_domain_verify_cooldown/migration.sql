-- CreateTable
CREATE TABLE "domain_verify_requests" (
    "domain_id" UUID NOT NULL,
    "requested_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "domain_verify_requests_pkey" PRIMARY KEY ("domain_id")
);

-- AddForeignKey
ALTER TABLE "domain_verify_requests" ADD CONSTRAINT "domain_verify_requests_domain_id_fkey" FOREIGN KEY ("domain_id") REFERENCES "domains"("id") ON DELETE CASCADE ON UPDATE CASCADE;
