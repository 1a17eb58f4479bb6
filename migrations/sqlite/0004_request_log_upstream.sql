ALTER TABLE `request_log` ADD `upstream` text;--> statement-breakpoint
ALTER TABLE `request_log` ADD `served_model` text;--> statement-breakpoint
ALTER TABLE `request_log` ADD `attempts` integer DEFAULT 0 NOT NULL;