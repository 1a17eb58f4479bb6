CREATE TABLE "api_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"role" text DEFAULT 'user' NOT NULL,
	"created_at" bigint NOT NULL,
	"expires_at" bigint,
	"revoked_at" bigint,
	"limits" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"models" jsonb
);
--> statement-breakpoint
CREATE TABLE "key_secrets" (
	"id" text PRIMARY KEY NOT NULL,
	"key_id" text NOT NULL,
	"prefix" text NOT NULL,
	"hash" text NOT NULL,
	"created_at" bigint NOT NULL,
	"expires_at" bigint,
	CONSTRAINT "key_secrets_hash_unique" UNIQUE("hash")
);
--> statement-breakpoint
CREATE TABLE "request_log" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"timestamp" text NOT NULL,
	"request_id" text NOT NULL,
	"entry_id" text NOT NULL,
	"key_id" text,
	"key_name" text,
	"ip" text NOT NULL,
	"method" text NOT NULL,
	"route" text NOT NULL,
	"model" text,
	"status" integer NOT NULL,
	"error_code" text,
	"prompt_tokens" bigint DEFAULT 0 NOT NULL,
	"completion_tokens" bigint DEFAULT 0 NOT NULL,
	"total_tokens" bigint DEFAULT 0 NOT NULL,
	"estimated" boolean DEFAULT false NOT NULL,
	"latency_ms" double precision NOT NULL,
	"upstream_ms" double precision,
	"queued_ms" double precision,
	"streamed" boolean DEFAULT false NOT NULL,
	"user_agent" text,
	"cost_micros" bigint,
	"day" text NOT NULL,
	"request_body" text,
	"response_body" text
);
--> statement-breakpoint
CREATE TABLE "settings" (
	"name" text PRIMARY KEY NOT NULL,
	"value" jsonb NOT NULL
);
--> statement-breakpoint
CREATE TABLE "usage_rollup" (
	"day" text NOT NULL,
	"key_id" text NOT NULL,
	"model" text NOT NULL,
	"requests" bigint DEFAULT 0 NOT NULL,
	"chat_requests" bigint DEFAULT 0 NOT NULL,
	"errors" bigint DEFAULT 0 NOT NULL,
	"rate_limited" bigint DEFAULT 0 NOT NULL,
	"prompt_tokens" bigint DEFAULT 0 NOT NULL,
	"completion_tokens" bigint DEFAULT 0 NOT NULL,
	"total_tokens" bigint DEFAULT 0 NOT NULL,
	"cost_micros" bigint,
	CONSTRAINT "usage_rollup_day_key_id_model_pk" PRIMARY KEY("day","key_id","model")
);
--> statement-breakpoint
ALTER TABLE "key_secrets" ADD CONSTRAINT "key_secrets_key_id_api_keys_id_fk" FOREIGN KEY ("key_id") REFERENCES "public"."api_keys"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "api_keys_live_name" ON "api_keys" USING btree (lower("name")) WHERE "api_keys"."revoked_at" is null;--> statement-breakpoint
CREATE INDEX "key_secrets_prefix" ON "key_secrets" USING btree ("prefix");--> statement-breakpoint
CREATE INDEX "key_secrets_key" ON "key_secrets" USING btree ("key_id");--> statement-breakpoint
CREATE UNIQUE INDEX "request_log_entry_id" ON "request_log" USING btree ("entry_id");--> statement-breakpoint
CREATE INDEX "request_log_request_id" ON "request_log" USING btree ("request_id");--> statement-breakpoint
CREATE INDEX "request_log_timestamp" ON "request_log" USING btree ("timestamp");--> statement-breakpoint
CREATE INDEX "request_log_key_timestamp" ON "request_log" USING btree ("key_id","timestamp");--> statement-breakpoint
CREATE INDEX "request_log_day_key" ON "request_log" USING btree ("day","key_id");--> statement-breakpoint
CREATE VIEW "public"."daily_usage" AS (select "key_id", "day", sum("requests")::bigint as "requests", sum("chat_requests")::bigint as "chat_requests", sum("prompt_tokens")::bigint as "prompt_tokens", sum("completion_tokens")::bigint as "completion_tokens", sum("total_tokens")::bigint as "total_tokens", sum("cost_micros")::bigint as "cost_micros" from "usage_rollup" where "usage_rollup"."key_id" <> '' group by "usage_rollup"."day", "usage_rollup"."key_id");