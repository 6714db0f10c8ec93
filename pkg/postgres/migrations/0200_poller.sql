-- Participations have no updated_at of their own (adding, checking in or
-- setting hours never bumps the user's): the poller derives changes by
-- comparing each participant of recent and upcoming project dates with what
-- it last published.
CREATE TABLE vomosync.participation_state (
    customer_id  text NOT NULL,
    key          text NOT NULL, -- project_date_id:user_id
    date_id      text NOT NULL,
    content_hash bytea NOT NULL,
    seen_at      timestamptz NOT NULL,
    PRIMARY KEY (customer_id, key)
);
CREATE INDEX participation_state_by_date ON vomosync.participation_state (customer_id, date_id);
