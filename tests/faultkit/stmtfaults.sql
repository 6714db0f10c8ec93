-- faultkit statement faults: a BEFORE ... FOR EACH STATEMENT trigger on each
-- chosen table raises an injected SQLSTATE on a share of statements.
-- Counters are sequences because the failing transaction rolls back any row.
CREATE SCHEMA IF NOT EXISTS faultkit;

CREATE TABLE IF NOT EXISTS faultkit.rules (
	tbl      regclass NOT NULL,
	sqlstate text     NOT NULL CHECK (sqlstate IN ('40001', '40P01')),
	share    float8   NOT NULL CHECK (share >= 0 AND share <= 1),
	PRIMARY KEY (tbl, sqlstate)
);

CREATE SEQUENCE IF NOT EXISTS faultkit.fired_40001;
CREATE SEQUENCE IF NOT EXISTS faultkit.fired_40p01;

-- SECURITY DEFINER: the application role needs no grant on faultkit.
CREATE OR REPLACE FUNCTION faultkit.maybe_fail() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, faultkit AS $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT sqlstate, share FROM faultkit.rules WHERE tbl = TG_RELID ORDER BY sqlstate LOOP
		IF random() < r.share THEN
			IF r.sqlstate = '40001' THEN
				PERFORM nextval('faultkit.fired_40001');
				RAISE EXCEPTION 'faultkit: injected serialization failure (% on %)', TG_OP, TG_TABLE_NAME
					USING ERRCODE = '40001';
			ELSE
				PERFORM nextval('faultkit.fired_40p01');
				RAISE EXCEPTION 'faultkit: injected deadlock (% on %)', TG_OP, TG_TABLE_NAME
					USING ERRCODE = '40P01';
			END IF;
		END IF;
	END LOOP;
	RETURN NULL;
END
$$;
