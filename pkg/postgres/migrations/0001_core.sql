-- Core control plane: customers, schedules, checkpoints, cycles, per-record
-- sync state, audit log, dead letters, reconciliation runs.
-- Ranges: 0001-0099 core (pkg), 0100 processor, 0200 poller, 0300 reconciler,
-- 0400 operator tooling, 0500 security.

CREATE SCHEMA IF NOT EXISTS vomosync;

CREATE TABLE vomosync.customers (
    id               text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name             text NOT NULL DEFAULT '',
    api_base_url     text NOT NULL DEFAULT 'https://api.vomo.org/v1',
    -- API token, envelope-encrypted: AES-GCM under a per-value data key, the
    -- data key wrapped by the key-encryption key kek_id; both bound to id.
    token_ciphertext bytea NOT NULL,
    token_wrapped_key bytea NOT NULL,
    kek_id           text NOT NULL,
    resources        text[] NOT NULL DEFAULT '{users}',
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'disabled')),
    status_reason    text NOT NULL DEFAULT '',
    settings         jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per (customer, resource, kind): what is due when, and who holds it.
CREATE TABLE vomosync.schedules (
    customer_id      text NOT NULL REFERENCES vomosync.customers (id) ON DELETE CASCADE,
    resource         text NOT NULL,
    kind             text NOT NULL DEFAULT 'poll' CHECK (kind IN ('poll', 'reconcile_daily', 'reconcile_full')),
    cadence          interval NOT NULL,
    next_run_at      timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_until      timestamptz,
    paused           boolean NOT NULL DEFAULT false,
    paused_reason    text NOT NULL DEFAULT '',
    last_started_at  timestamptz,
    last_finished_at timestamptz,
    last_outcome     text,
    PRIMARY KEY (customer_id, resource, kind)
);
CREATE INDEX schedules_due ON vomosync.schedules (kind, next_run_at) WHERE NOT paused;

-- The primary checkpoint: everything with updated_at <= position has been
-- durably handed to JetStream. backfill carries the resume point of an
-- unfinished walk from epoch.
CREATE TABLE vomosync.checkpoints (
    customer_id text NOT NULL REFERENCES vomosync.customers (id) ON DELETE CASCADE,
    resource    text NOT NULL,
    position    timestamptz NOT NULL,
    backfill    jsonb,
    cycle_id    uuid,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, resource)
);

-- Every change to a checkpoint not made by a normal cycle: who, why, old, new.
CREATE TABLE vomosync.checkpoint_decisions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  text NOT NULL,
    resource     text NOT NULL,
    actor        text NOT NULL,
    strategy     text NOT NULL,
    reason       text NOT NULL,
    old_position timestamptz,
    new_position timestamptz,
    decided_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX checkpoint_decisions_by_customer ON vomosync.checkpoint_decisions (customer_id, resource, decided_at DESC);

CREATE TABLE vomosync.poll_cycles (
    id                uuid PRIMARY KEY,
    customer_id       text NOT NULL,
    resource          text NOT NULL,
    origin            text NOT NULL DEFAULT 'poll',
    trace_id          text NOT NULL,
    window_from       timestamptz,
    window_to         timestamptz,
    checkpoint_before timestamptz,
    checkpoint_after  timestamptz,
    pages             int NOT NULL DEFAULT 0,
    requests          int NOT NULL DEFAULT 0,
    records_seen      int NOT NULL DEFAULT 0,
    records_published int NOT NULL DEFAULT 0,
    statuses          jsonb NOT NULL DEFAULT '{}',
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz,
    duration_ms       bigint,
    outcome           text NOT NULL CHECK (outcome IN ('running', 'success', 'partial', 'failed', 'interrupted')),
    error             text NOT NULL DEFAULT '',
    note              text NOT NULL DEFAULT ''
);
CREATE INDEX poll_cycles_by_customer ON vomosync.poll_cycles (customer_id, resource, started_at DESC);
CREATE INDEX poll_cycles_by_trace ON vomosync.poll_cycles (trace_id);

-- Per-record sync state: the external-id mapping (destinations never key on
-- VOMO ids) and the newest source version applied (the optimistic guard).
CREATE TABLE vomosync.sync_state (
    customer_id       text NOT NULL,
    resource          text NOT NULL,
    record_id         text NOT NULL,
    external_id       text NOT NULL,
    source_updated_at timestamptz NOT NULL,
    deleted           boolean NOT NULL DEFAULT false,
    content_hash      bytea,
    first_seen_at     timestamptz NOT NULL DEFAULT now(),
    applied_at        timestamptz NOT NULL DEFAULT now(),
    trace_id          text NOT NULL DEFAULT '',
    PRIMARY KEY (customer_id, resource, record_id)
);
CREATE UNIQUE INDEX sync_state_external ON vomosync.sync_state (customer_id, resource, external_id);

-- Every processing attempt. Partitioned by day; the processor creates
-- partitions ahead and drops those past retention.
CREATE TABLE vomosync.audit_log (
    id                bigint GENERATED ALWAYS AS IDENTITY,
    customer_id       text NOT NULL,
    resource          text NOT NULL,
    record_id         text NOT NULL,
    record_updated_at timestamptz,
    processed_at      timestamptz NOT NULL DEFAULT now(),
    trace_id          text NOT NULL DEFAULT '',
    cycle_id          text NOT NULL DEFAULT '',
    origin            text NOT NULL,
    operation         text NOT NULL DEFAULT 'upsert',
    outcome           text NOT NULL CHECK (outcome IN ('applied', 'skipped_stale', 'failed', 'dead_lettered')),
    changed_fields    text[],
    error             text NOT NULL DEFAULT ''
) PARTITION BY RANGE (processed_at);
CREATE TABLE vomosync.audit_log_default PARTITION OF vomosync.audit_log DEFAULT;
CREATE INDEX audit_log_by_record ON vomosync.audit_log (customer_id, resource, record_id, processed_at DESC);
CREATE INDEX audit_log_by_trace ON vomosync.audit_log (trace_id);

CREATE TABLE vomosync.dead_letters (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id       text NOT NULL,
    resource          text NOT NULL,
    record_id         text NOT NULL DEFAULT '',
    record_updated_at timestamptz,
    msg_id            text NOT NULL DEFAULT '',
    subject           text NOT NULL,
    payload           bytea NOT NULL,
    headers           jsonb NOT NULL DEFAULT '{}',
    error             text NOT NULL,
    error_class       text NOT NULL DEFAULT 'permanent',
    attempts          int NOT NULL DEFAULT 1,
    trace_id          text NOT NULL DEFAULT '',
    first_failed_at   timestamptz NOT NULL DEFAULT now(),
    last_failed_at    timestamptz NOT NULL DEFAULT now(),
    status            text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'retried', 'discarded', 'redriven')),
    resolved_by       text NOT NULL DEFAULT '',
    resolved_reason   text NOT NULL DEFAULT '',
    resolved_at       timestamptz
);
CREATE INDEX dead_letters_open ON vomosync.dead_letters (customer_id, status, last_failed_at DESC);
CREATE INDEX dead_letters_by_record ON vomosync.dead_letters (customer_id, resource, record_id);

CREATE TABLE vomosync.recon_runs (
    id             uuid PRIMARY KEY,
    customer_id    text NOT NULL,
    resource       text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('incremental', 'full')),
    mode           text NOT NULL CHECK (mode IN ('report', 'repair', 'dry_run')),
    trace_id       text NOT NULL,
    window_from    timestamptz,
    window_to      timestamptz,
    expected       int NOT NULL DEFAULT 0,
    source_records int NOT NULL DEFAULT 0,
    gaps           jsonb NOT NULL DEFAULT '{}',
    repaired       int NOT NULL DEFAULT 0,
    held           boolean NOT NULL DEFAULT false,
    trusted        boolean NOT NULL DEFAULT true,
    requests       int NOT NULL DEFAULT 0,
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz,
    duration_ms    bigint,
    outcome        text NOT NULL CHECK (outcome IN ('running', 'success', 'held', 'untrusted', 'failed', 'interrupted')),
    error          text NOT NULL DEFAULT ''
);
CREATE INDEX recon_runs_by_customer ON vomosync.recon_runs (customer_id, resource, started_at DESC);

CREATE TABLE vomosync.recon_gaps (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id            uuid NOT NULL REFERENCES vomosync.recon_runs (id) ON DELETE CASCADE,
    customer_id       text NOT NULL,
    resource          text NOT NULL,
    record_id         text NOT NULL,
    class             text NOT NULL CHECK (class IN ('missing', 'stale', 'deleted', 'field_drift', 'untrusted_walk')),
    cause             text NOT NULL,
    source_updated_at timestamptz,
    dest_updated_at   timestamptz,
    detail            text NOT NULL DEFAULT '',
    repaired          boolean NOT NULL DEFAULT false,
    found_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recon_gaps_by_day ON vomosync.recon_gaps (customer_id, found_at DESC);

-- The per-customer API budget, shared by every process calling VOMO with
-- that customer's token (token bucket refilled on read).
CREATE TABLE vomosync.api_budgets (
    customer_id text PRIMARY KEY REFERENCES vomosync.customers (id) ON DELETE CASCADE,
    tokens      double precision NOT NULL,
    refilled_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- API calls that did not succeed, for "API errors in the last hour".
CREATE TABLE vomosync.api_errors (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id text NOT NULL,
    endpoint    text NOT NULL,
    status      int NOT NULL,
    error       text NOT NULL DEFAULT '',
    trace_id    text NOT NULL DEFAULT '',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_errors_recent ON vomosync.api_errors (customer_id, at DESC);
