ALTER TABLE "request_log" ADD COLUMN "upstream" text;--> statement-breakpoint
ALTER TABLE "request_log" ADD COLUMN "served_model" text;--> statement-breakpoint
ALTER TABLE "request_log" ADD COLUMN "attempts" integer DEFAULT 0 NOT NULL;