-- Every committed write to keys, secrets or settings notifies the gateways listening on
-- gateway_config (delivered at commit), so a CLI change reaches each gateway within a second.
CREATE FUNCTION gateway_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('gateway_config', TG_TABLE_NAME);
  RETURN NULL;
END
$$;--> statement-breakpoint
CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON "api_keys" FOR EACH STATEMENT EXECUTE FUNCTION gateway_config_changed();--> statement-breakpoint
CREATE TRIGGER key_secrets_changed AFTER INSERT OR UPDATE OR DELETE ON "key_secrets" FOR EACH STATEMENT EXECUTE FUNCTION gateway_config_changed();--> statement-breakpoint
CREATE TRIGGER settings_changed AFTER INSERT OR UPDATE OR DELETE ON "settings" FOR EACH STATEMENT EXECUTE FUNCTION gateway_config_changed();
