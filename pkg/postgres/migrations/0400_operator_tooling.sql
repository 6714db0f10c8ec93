-- Operator tooling: console operators and their sessions, customer-scoped
-- console tokens, the login rate limit, the audit of every operator action,
-- and the indexes the console's summary needs at thousands of customers.

CREATE TABLE vomosync.operators (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._@-]{0,62}$'),
    password_hash text NOT NULL, -- bcrypt
    disabled      boolean NOT NULL DEFAULT false,
    created_by    text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);

-- A customer's own view of its sync health: the token is shown once at
-- creation and only its SHA-256 is kept.
CREATE TABLE vomosync.console_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  text NOT NULL REFERENCES vomosync.customers (id) ON DELETE CASCADE,
    token_hash   bytea NOT NULL UNIQUE,
    label        text NOT NULL DEFAULT '',
    created_by   text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX console_tokens_by_customer ON vomosync.console_tokens (customer_id);

-- Console sessions of both kinds. The cookie holds a random token; the row
-- holds its HMAC under CONSOLE_SESSION_KEY, so neither a database dump nor a
-- guessed row yields a usable cookie. A customer session is bound to the
-- token it was opened with: revoking the token ends the session.
CREATE TABLE vomosync.console_sessions (
    token_hash   bytea PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('operator', 'customer')),
    operator_id  bigint REFERENCES vomosync.operators (id) ON DELETE CASCADE,
    customer_id  text REFERENCES vomosync.customers (id) ON DELETE CASCADE,
    token_id     bigint REFERENCES vomosync.console_tokens (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    remote_addr  text NOT NULL DEFAULT '',
    CHECK ((kind = 'operator' AND operator_id IS NOT NULL AND customer_id IS NULL)
        OR (kind = 'customer' AND customer_id IS NOT NULL AND token_id IS NOT NULL AND operator_id IS NULL))
);
CREATE INDEX console_sessions_expiry ON vomosync.console_sessions (expires_at);

-- Failed logins, counted per key (user name, client address) over a window,
-- in the database so every console replica sees the same count.
CREATE TABLE vomosync.login_failures (
    key text NOT NULL,
    at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_by_key ON vomosync.login_failures (key, at DESC);

-- Every action an operator takes, from the console or syncctl: who, what,
-- on which customer, why.
CREATE TABLE vomosync.operator_actions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor       text NOT NULL,
    via         text NOT NULL CHECK (via IN ('console', 'syncctl')),
    action      text NOT NULL,
    customer_id text NOT NULL DEFAULT '',
    resource    text NOT NULL DEFAULT '',
    target      text NOT NULL DEFAULT '',
    reason      text NOT NULL DEFAULT '',
    detail      jsonb NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operator_actions_recent ON vomosync.operator_actions (at DESC);
CREATE INDEX operator_actions_by_customer ON vomosync.operator_actions (customer_id, at DESC);

-- Open dead letters per customer and resource, counted for every customer
-- on the summary page without reading resolved ones.
CREATE INDEX dead_letters_open_depth ON vomosync.dead_letters (customer_id, resource) WHERE status = 'open';
-- Recent API errors of the whole fleet (syncctl api-errors without --customer).
CREATE INDEX api_errors_at ON vomosync.api_errors (at DESC);

-- The health of every enabled (customer, resource) pair, one row each, with
-- the flags that make it anomalous. The console's summary and customer pages
-- and syncctl read it, so "anomalous" has one definition. Every lookup is
-- an index probe per pair (schedules and checkpoints by primary key, dead
-- letters by dead_letters_open_depth, the last run by recon_runs_by_customer).
CREATE VIEW vomosync.pair_health AS
SELECT h.*, (h.customer_status <> 'active' OR h.paused OR h.silent OR h.checkpoint_lost OR h.poll_failed
             OR h.dlq_deep OR h.recon_bad) AS anomalous
FROM (
SELECT c.id AS customer_id, c.name AS customer_name, c.status AS customer_status, c.status_reason,
       r.resource, s.cadence, coalesce(s.paused, false) AS paused, coalesce(s.paused_reason, '') AS paused_reason,
       s.last_started_at, s.last_finished_at, coalesce(s.last_outcome, '') AS last_outcome, s.next_run_at,
       cp.position, cp.updated_at AS checkpoint_written_at, dl.open AS dlq_open,
       rr.kind AS recon_kind, rr.outcome AS recon_outcome, rr.gap_rate AS recon_gap_rate, rr.started_at AS recon_started_at,
       coalesce(nullif(rr.held_reason, ''), nullif(rr.untrusted_reason, ''), rr.error) AS recon_reason,
       coalesce(nullif((c.settings -> 'reconcile' ->> 'gap_threshold')::float8, 0), 0.01) AS gap_threshold,
       c.status = 'active' AND coalesce(s.paused, false) = false AND
           coalesce(s.last_finished_at, c.created_at) < now() - greatest(2 * coalesce(s.cadence, interval '30 minutes'), interval '10 minutes')
           AS silent,
       cp.customer_id IS NULL AS checkpoint_lost,
       coalesce(s.last_outcome, '') = 'failed' AS poll_failed,
       dl.open > 100 AS dlq_deep,
       coalesce(rr.outcome IN ('held', 'untrusted', 'failed')
           OR rr.gap_rate > coalesce(nullif((c.settings -> 'reconcile' ->> 'gap_threshold')::float8, 0), 0.01), false) AS recon_bad
FROM vomosync.customers c
CROSS JOIN LATERAL unnest(c.resources) AS r(resource)
LEFT JOIN vomosync.schedules s ON s.customer_id = c.id AND s.resource = r.resource AND s.kind = 'poll'
LEFT JOIN vomosync.checkpoints cp ON cp.customer_id = c.id AND cp.resource = r.resource
CROSS JOIN LATERAL (SELECT count(*) AS open FROM vomosync.dead_letters d
                    WHERE d.customer_id = c.id AND d.resource = r.resource AND d.status = 'open') dl
LEFT JOIN LATERAL (SELECT kind, outcome, gap_rate, held_reason, untrusted_reason, error, started_at
                   FROM vomosync.recon_runs x
                   WHERE x.customer_id = c.id AND x.resource = r.resource AND x.outcome <> 'running'
                   ORDER BY x.started_at DESC LIMIT 1) rr ON true
) h;
