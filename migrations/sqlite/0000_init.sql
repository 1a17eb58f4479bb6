CREATE TABLE `api_keys` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`role` text DEFAULT 'user' NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer,
	`revoked_at` integer,
	`limits` text DEFAULT '{}' NOT NULL,
	`models` text
);
--> statement-breakpoint
CREATE UNIQUE INDEX `api_keys_name_unique` ON `api_keys` (`name`);--> statement-breakpoint
CREATE TABLE `daily_usage` (
	`key_id` text NOT NULL,
	`day` text NOT NULL,
	`requests` integer DEFAULT 0 NOT NULL,
	`prompt_tokens` integer DEFAULT 0 NOT NULL,
	`completion_tokens` integer DEFAULT 0 NOT NULL,
	`total_tokens` integer DEFAULT 0 NOT NULL,
	`cost_micros` integer,
	PRIMARY KEY(`key_id`, `day`)
);
--> statement-breakpoint
CREATE INDEX `daily_usage_day` ON `daily_usage` (`day`);--> statement-breakpoint
CREATE TABLE `key_secrets` (
	`id` text PRIMARY KEY NOT NULL,
	`key_id` text NOT NULL,
	`prefix` text NOT NULL,
	`hash` text NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer,
	FOREIGN KEY (`key_id`) REFERENCES `api_keys`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `key_secrets_hash_unique` ON `key_secrets` (`hash`);--> statement-breakpoint
CREATE INDEX `key_secrets_prefix` ON `key_secrets` (`prefix`);--> statement-breakpoint
CREATE INDEX `key_secrets_key` ON `key_secrets` (`key_id`);--> statement-breakpoint
CREATE TABLE `request_log` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`timestamp` text NOT NULL,
	`request_id` text NOT NULL,
	`key_id` text,
	`key_name` text,
	`ip` text NOT NULL,
	`method` text NOT NULL,
	`route` text NOT NULL,
	`model` text,
	`status` integer NOT NULL,
	`error_code` text,
	`prompt_tokens` integer DEFAULT 0 NOT NULL,
	`completion_tokens` integer DEFAULT 0 NOT NULL,
	`total_tokens` integer DEFAULT 0 NOT NULL,
	`estimated` integer DEFAULT false NOT NULL,
	`latency_ms` real NOT NULL,
	`upstream_ms` real,
	`queued_ms` real,
	`streamed` integer DEFAULT false NOT NULL,
	`user_agent` text,
	`cost_micros` integer,
	`day` text NOT NULL,
	`request_body` text,
	`response_body` text
);
--> statement-breakpoint
CREATE INDEX `request_log_timestamp` ON `request_log` (`timestamp`);--> statement-breakpoint
CREATE INDEX `request_log_key_timestamp` ON `request_log` (`key_id`,`timestamp`);--> statement-breakpoint
CREATE TABLE `settings` (
	`name` text PRIMARY KEY NOT NULL,
	`value` text NOT NULL
);
