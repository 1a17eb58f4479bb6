CREATE TABLE `usage_rollup` (
	`day` text NOT NULL,
	`key_id` text NOT NULL,
	`model` text NOT NULL,
	`requests` integer DEFAULT 0 NOT NULL,
	`chat_requests` integer DEFAULT 0 NOT NULL,
	`errors` integer DEFAULT 0 NOT NULL,
	`rate_limited` integer DEFAULT 0 NOT NULL,
	`prompt_tokens` integer DEFAULT 0 NOT NULL,
	`completion_tokens` integer DEFAULT 0 NOT NULL,
	`total_tokens` integer DEFAULT 0 NOT NULL,
	`cost_micros` integer,
	PRIMARY KEY(`day`, `key_id`, `model`)
);
--> statement-breakpoint
-- Backfill: the log as it is now, per day, key and model.
INSERT INTO `usage_rollup` (`day`, `key_id`, `model`, `requests`, `chat_requests`, `errors`, `rate_limited`, `prompt_tokens`, `completion_tokens`, `total_tokens`, `cost_micros`)
SELECT `day`, coalesce(`key_id`, ''), coalesce(`model`, ''), count(*), sum(`route` IN ('/chat', '/v1/chat/completions')), sum(`status` >= 400), sum(`status` = 429),
	sum(`prompt_tokens`), sum(`completion_tokens`), sum(`total_tokens`), sum(`cost_micros`)
FROM `request_log` GROUP BY 1, 2, 3;
--> statement-breakpoint
-- What daily_usage kept beyond the log (rows pruned before this version): requests, tokens and
-- cost only, under no model (their model and statuses are gone).
INSERT INTO `usage_rollup` (`day`, `key_id`, `model`, `requests`, `prompt_tokens`, `completion_tokens`, `total_tokens`, `cost_micros`)
SELECT d.`day`, d.`key_id`, '', d.`requests` - coalesce(l.`requests`, 0), d.`prompt_tokens` - coalesce(l.`prompt_tokens`, 0),
	d.`completion_tokens` - coalesce(l.`completion_tokens`, 0), d.`total_tokens` - coalesce(l.`total_tokens`, 0),
	CASE WHEN d.`cost_micros` IS NULL THEN NULL ELSE d.`cost_micros` - coalesce(l.`cost_micros`, 0) END
FROM `daily_usage` d LEFT JOIN (
	SELECT `key_id`, `day`, count(*) AS `requests`, sum(`prompt_tokens`) AS `prompt_tokens`, sum(`completion_tokens`) AS `completion_tokens`,
		sum(`total_tokens`) AS `total_tokens`, sum(`cost_micros`) AS `cost_micros`
	FROM `request_log` WHERE `key_id` IS NOT NULL GROUP BY `key_id`, `day`
) l ON l.`key_id` = d.`key_id` AND l.`day` = d.`day`
WHERE d.`requests` > coalesce(l.`requests`, 0)
ON CONFLICT (`day`, `key_id`, `model`) DO UPDATE SET
	`requests` = `requests` + excluded.`requests`,
	`prompt_tokens` = `prompt_tokens` + excluded.`prompt_tokens`,
	`completion_tokens` = `completion_tokens` + excluded.`completion_tokens`,
	`total_tokens` = `total_tokens` + excluded.`total_tokens`,
	`cost_micros` = CASE WHEN excluded.`cost_micros` IS NULL THEN `cost_micros` ELSE coalesce(`cost_micros`, 0) + excluded.`cost_micros` END;
--> statement-breakpoint
DROP TABLE `daily_usage`;--> statement-breakpoint
CREATE INDEX `request_log_day_key` ON `request_log` (`day`,`key_id`);--> statement-breakpoint
CREATE VIEW `daily_usage` AS select "key_id", "day", sum("requests") as "requests", sum("chat_requests") as "chat_requests", sum("prompt_tokens") as "prompt_tokens", sum("completion_tokens") as "completion_tokens", sum("total_tokens") as "total_tokens", sum("cost_micros") as "cost_micros" from "usage_rollup" where "usage_rollup"."key_id" <> '' group by "usage_rollup"."day", "usage_rollup"."key_id";