-- Destination: the default schema's users_by_email index goes. Nothing in
-- vomosync reads by email, a customer's own schema never had it, and
-- maintaining lower(email) on every upsert cost about a fifth of the
-- processor's throughput (services/processor/README.md, Benchmark). The
-- destination tables keep their key index only; their owners add the
-- indexes their own queries need.
DROP INDEX IF EXISTS vomo_dest.users_by_email;
