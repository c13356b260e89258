#!/usr/bin/env bash
# The project's test command (README: "Run the tests"). CI runs it too.
#
# Runs: the gofmt check, go vet, the JavaScript unit tests of the browser
# client (node --test internal/web/jstest/, when node is installed),
# go test -race ./... (installing first, with npm, the npm rich-text
# package that ot/rich's differential test compares against; it includes
# 15 s of the simulator, TestSim, on fresh seeds), and the simulator's
# injected-bug test (-tags simbugs). The browser tests (internal/web/browser_test.go) need
# chromium; without it they are skipped, unless TANDEM_REQUIRE_BROWSER=1
# (as in CI), which makes a missing browser a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
go vet -tags simbugs ./internal/collab

if [ -d internal/web/jstest ]; then
  if command -v node >/dev/null 2>&1; then
    echo "node --test internal/web/jstest/ ($(node --version)): a dot per test, failures in full"
    node --test --test-reporter=dot internal/web/jstest/
  else
    echo "NOTE: node not found: skipping the JavaScript tests (internal/web/jstest)"
  fi
fi

# The rich-text type's differential test (ot/rich) runs npm rich-text
# itself: install it (pinned by its package-lock.json) when npm is here.
# The webhooks' test verifies signatures with npm standardwebhooks (the
# reference verifier), and the npm package's test type-checks with
# typescript: the same.
for ref in ot/rich/testdata/ref:rich-text testdata/webhookref:standardwebhooks testdata/npmapp:typescript; do
  dir=${ref%%:*} pkg=${ref##*:}
  if [ ! -d "$dir/node_modules/$pkg" ] && command -v npm >/dev/null 2>&1; then
    echo "npm ci in $dir (the $pkg reference)"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
  fi
done

if [ -z "${TANDEM_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
   && ! command -v google-chrome >/dev/null 2>&1 && ! command -v google-chrome-stable >/dev/null 2>&1; then
  if [ "${TANDEM_REQUIRE_BROWSER:-}" = 1 ]; then
    echo "TANDEM_REQUIRE_BROWSER=1 but no chromium found (apt-get install -y chromium)"; exit 1
  fi
  echo "NOTE: chromium not found: the browser tests (internal/web/browser_test.go) will be skipped."
  echo "      Install it to run them: sudo apt-get install -y chromium (or set TANDEM_CHROMIUM=/path/to/chrome)."
fi
# (A package's tests may take longer than go test's default 10 minutes on
# a busy 2-core machine under -race: cmd/tandem and storage/jsstore take
# 4–5 alone and up to 10 beside the others. 30 leaves room, and a hang
# still ends with every goroutine's stack.)
go test -race -count=1 -timeout 30m ./...
# The simulator's own test: six known bugs, injected one at a time (they
# exist only with this tag), must each be caught from fresh seeds
# (docs/testing.md).
go test -count=1 -tags simbugs -run 'TestSimFindsBugs' ./internal/collab
