-- Reconciler: what each run compared against and why it held, plus the
-- indexes its evidence queries need.

ALTER TABLE vomosync.recon_runs
    -- The poller's checkpoint when the run started: only source versions at or
    -- behind it are compared; newer ones are still on their way (pending).
    ADD COLUMN horizon          timestamptz,
    ADD COLUMN pending          int NOT NULL DEFAULT 0,
    ADD COLUMN gap_rate         double precision NOT NULL DEFAULT 0,
    ADD COLUMN causes           jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN held_reason      text NOT NULL DEFAULT '',
    ADD COLUMN untrusted_reason text NOT NULL DEFAULT '',
    ADD COLUMN forced           boolean NOT NULL DEFAULT false,
    ADD COLUMN actor            text NOT NULL DEFAULT '',
    ADD COLUMN redriven         int NOT NULL DEFAULT 0,
    ADD COLUMN drift_checked    int NOT NULL DEFAULT 0,
    ADD COLUMN note             text NOT NULL DEFAULT '';

-- "Did the last repair stick?" compares a run's gaps with the previous run's.
CREATE INDEX recon_gaps_by_run ON vomosync.recon_gaps (run_id, record_id);
-- "Why did record X not sync?" across runs.
CREATE INDEX recon_gaps_by_record ON vomosync.recon_gaps (customer_id, resource, record_id, found_at DESC);
-- Which successful poll cycle covered a source updated_at (cause evidence).
CREATE INDEX poll_cycles_success_window ON vomosync.poll_cycles (customer_id, resource, window_to)
    WHERE outcome = 'success';
