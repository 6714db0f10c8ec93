# Fuzzing of every decoder that reads outside input (docs/security.md). The
# root Makefile includes this file; recipes run from the repository root.

FUZZ_LONG ?= 10m

# Every fuzz target as "dir name", found in the test files of every module
# (new targets join without editing this file).
FUZZ_TARGETS = grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' pkg services cmd tests 2>/dev/null | sort | \
	while read -r f; do grep -oE '^func Fuzz[A-Za-z0-9_]*' "$$f" | sed "s|^func |./$$(dirname "$$f") |"; done

.PHONY: fuzz-list
fuzz-list: ## List every fuzz target (package and name)
	@$(FUZZ_TARGETS)

# A duration-bound fuzz run can end with a bare "context deadline exceeded"
# and no failing input (golang/go#75804, fixed in Go 1.27). A run fails here
# only when the target failed some other way or wrote a failing input to
# testdata/fuzz/<target>/; that flake is reported and skipped.
.PHONY: fuzz-long
fuzz-long: ## Fuzz every decoder for FUZZ_LONG each (default 10m); fails on any crash or failing input
	@$(FUZZ_TARGETS) | { fail=0; while read -r dir name; do \
	  corpus="$$dir/testdata/fuzz/$$name"; before=$$(ls "$$corpus" 2>/dev/null | wc -l); \
	  echo "== fuzz $$dir $$name for $(FUZZ_LONG)"; \
	  log=$$(mktemp); \
	  if go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZ_LONG) -timeout 0 "$$dir" >"$$log" 2>&1; then tail -n 3 "$$log"; \
	  else after=$$(ls "$$corpus" 2>/dev/null | wc -l); cat "$$log"; \
	    if [ "$$after" = "$$before" ] && grep -q 'context deadline exceeded' "$$log"; then echo "== $$name: deadline flake at the end of the run (no failing input), not a failure"; \
	    else echo "== $$name FAILED (failing input, if any, in $$corpus)"; fail=1; fi; \
	  fi; rm -f "$$log"; \
	done; exit $$fail; }
