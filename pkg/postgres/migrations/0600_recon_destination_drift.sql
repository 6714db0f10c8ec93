-- Reconciler: a gap class for destination rows that differ from what
-- vomosync delivered (sync_state): changed, removed or resurrected behind
-- vomosync's back in the Postgres destination.
ALTER TABLE vomosync.recon_gaps DROP CONSTRAINT recon_gaps_class_check;
ALTER TABLE vomosync.recon_gaps ADD CONSTRAINT recon_gaps_class_check
    CHECK (class IN ('missing', 'stale', 'deleted', 'field_drift', 'destination_drift', 'untrusted_walk'));
