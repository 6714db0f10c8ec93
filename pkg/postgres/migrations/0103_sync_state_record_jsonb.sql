-- Back to jsonb (0101 made it text): the reconciler compares delivered
-- records with the source as jsonb, and sync_state.record is part of what
-- vomosync believes it delivered, queried with record->>'field'.
ALTER TABLE vomosync.sync_state ALTER COLUMN record TYPE jsonb USING record::jsonb;
