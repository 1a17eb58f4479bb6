DROP INDEX `api_keys_name_unique`;--> statement-breakpoint
-- Names become unique without regard to case among live keys: a live key whose name only
-- differs in case from an older live key's gets its id appended, so the index can be built.
UPDATE `api_keys` SET `name` = `name` || ' (' || `id` || ')' WHERE `revoked_at` IS NULL AND EXISTS (SELECT 1 FROM `api_keys` AS `older` WHERE `older`.`revoked_at` IS NULL AND lower(`older`.`name`) = lower(`api_keys`.`name`) AND (`older`.`created_at` < `api_keys`.`created_at` OR (`older`.`created_at` = `api_keys`.`created_at` AND `older`.`id` < `api_keys`.`id`)));--> statement-breakpoint
CREATE UNIQUE INDEX `api_keys_live_name` ON `api_keys` (lower("name")) WHERE "api_keys"."revoked_at" is null;
