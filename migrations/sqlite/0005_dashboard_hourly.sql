CREATE TABLE `latency_hourly` (
	`hour` text NOT NULL,
	`bucket` integer NOT NULL,
	`requests` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`hour`, `bucket`)
);
--> statement-breakpoint
CREATE TABLE `usage_hourly` (
	`hour` text NOT NULL,
	`key_id` text NOT NULL,
	`model` text NOT NULL,
	`requests` integer DEFAULT 0 NOT NULL,
	`errors` integer DEFAULT 0 NOT NULL,
	`rate_limited` integer DEFAULT 0 NOT NULL,
	`prompt_tokens` integer DEFAULT 0 NOT NULL,
	`completion_tokens` integer DEFAULT 0 NOT NULL,
	`total_tokens` integer DEFAULT 0 NOT NULL,
	`cost_micros` integer,
	PRIMARY KEY(`hour`, `key_id`, `model`)
);
--> statement-breakpoint
CREATE INDEX `request_log_errors` ON `request_log` (`timestamp`,`day`,`status`,`error_code`) WHERE "request_log"."status" >= 400;--> statement-breakpoint
-- The hourly sums and latency counts of the rows still in the log (pruned hours stay empty).
INSERT INTO `usage_hourly` (`hour`, `key_id`, `model`, `requests`, `errors`, `rate_limited`, `prompt_tokens`, `completion_tokens`, `total_tokens`, `cost_micros`)
SELECT substr(`timestamp`, 1, 13), coalesce(`key_id`, ''), coalesce(`model`, ''), count(*), sum(`status` >= 400), sum(`status` = 429),
	sum(`prompt_tokens`), sum(`completion_tokens`), sum(`total_tokens`), sum(`cost_micros`)
FROM `request_log` GROUP BY 1, 2, 3;
--> statement-breakpoint
-- Buckets as src/core/latency-histogram.ts computes them: round(ln(1 + ms) / ln(1.05)).
INSERT INTO `latency_hourly` (`hour`, `bucket`, `requests`)
SELECT substr(`timestamp`, 1, 13), max(0, cast(round(ln(1 + max(0, `latency_ms`)) / ln(1.05)) AS integer)), count(*)
FROM `request_log` GROUP BY 1, 2;
