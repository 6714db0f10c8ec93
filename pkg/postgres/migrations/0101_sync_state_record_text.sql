-- sync_state.record keeps the bytes the processor applied, as text: the
-- processor compares them field by field without a JSON round trip, and
-- Postgres need not parse every record twice per batch (the destination
-- table holds it as jsonb). Read it as record::jsonb.
ALTER TABLE vomosync.sync_state ALTER COLUMN record TYPE text USING record::text;
