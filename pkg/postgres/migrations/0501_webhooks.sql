-- Webhook intake (services/poller/webhook): VOMO webhooks only make a poll
-- due sooner. Each customer's signing secret is envelope-encrypted like its
-- API token (bound to "webhook:<id>"); deliveries are remembered by the
-- SHA-256 of their raw body for the replay window, so a replayed or
-- duplicated delivery has no second effect.
CREATE TABLE vomosync.webhook_secrets (
    customer_id  text PRIMARY KEY REFERENCES vomosync.customers (id) ON DELETE CASCADE,
    ciphertext   bytea NOT NULL,
    wrapped_key  bytea NOT NULL,
    kek_id       text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vomosync.webhook_deliveries (
    customer_id  text NOT NULL REFERENCES vomosync.customers (id) ON DELETE CASCADE,
    body_sha256  bytea NOT NULL,
    event_type   text NOT NULL DEFAULT '',
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, body_sha256)
);
CREATE INDEX webhook_deliveries_age ON vomosync.webhook_deliveries (customer_id, received_at);

DO $$
DECLARE
    tab text;
BEGIN
    FOREACH tab IN ARRAY ARRAY['webhook_secrets', 'webhook_deliveries'] LOOP
        EXECUTE format('ALTER TABLE vomosync.%I ENABLE ROW LEVEL SECURITY', tab);
        EXECUTE format('CREATE POLICY tenant_isolation ON vomosync.%I USING (vomosync.tenant_visible(customer_id)) WITH CHECK (vomosync.tenant_visible(customer_id))', tab);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON vomosync.%I TO vomosync_app', tab);
    END LOOP;
END
$$;
