-- The window's upper bound of the last successful cycle (the API's clock,
-- capped by the poller's). The next window starts an overlap behind the later
-- of it and the position, so a pair whose source went quiet stops re-reading
-- the overlap behind its last change on every cycle, forever. NULL (never
-- walked, or the position set by a decision) falls back to the position.
ALTER TABLE vomosync.checkpoints ADD COLUMN walked_to timestamptz;
