DROP INDEX `api_keys_name_unique`;--> statement-breakpoint
CREATE UNIQUE INDEX `api_keys_live_name` ON `api_keys` (lower("name")) WHERE "api_keys"."revoked_at" is null;