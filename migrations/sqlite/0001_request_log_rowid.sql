PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_request_log` (
	`id` integer PRIMARY KEY NOT NULL,
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
INSERT INTO `__new_request_log`("id", "timestamp", "request_id", "key_id", "key_name", "ip", "method", "route", "model", "status", "error_code", "prompt_tokens", "completion_tokens", "total_tokens", "estimated", "latency_ms", "upstream_ms", "queued_ms", "streamed", "user_agent", "cost_micros", "day", "request_body", "response_body") SELECT "id", "timestamp", "request_id", "key_id", "key_name", "ip", "method", "route", "model", "status", "error_code", "prompt_tokens", "completion_tokens", "total_tokens", "estimated", "latency_ms", "upstream_ms", "queued_ms", "streamed", "user_agent", "cost_micros", "day", "request_body", "response_body" FROM `request_log`;--> statement-breakpoint
DROP TABLE `request_log`;--> statement-breakpoint
ALTER TABLE `__new_request_log` RENAME TO `request_log`;--> statement-breakpoint
PRAGMA foreign_keys=ON;--> statement-breakpoint
CREATE INDEX `request_log_timestamp` ON `request_log` (`timestamp`);--> statement-breakpoint
CREATE INDEX `request_log_key_timestamp` ON `request_log` (`key_id`,`timestamp`);