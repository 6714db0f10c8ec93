# Console targets; the root Makefile includes this file.

.PHONY: console-chromium
console-chromium: ## Install headless Chromium (Debian package chromium) when it is missing
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package) for the console's browser test"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

.PHONY: console-e2e
console-e2e: console-chromium ## Drive the console in headless Chromium (login, summary, customer, record, portal); screenshots in .artifacts/console-e2e
	cd services/console && go test -count=1 -v -run 'TestBrowser' ./e2e/
