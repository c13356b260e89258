#!/usr/bin/env bash
# Rebuilds the vendored browser modules in web/static/js/vendor/ from the
# npm packages pinned in package.json / package-lock.json:
#
#   codemirror.js  CodeMirror 6 (state, view, commands, search, language,
#                  Markdown), what web/static/js/codemirror.js and the demo use
#   preview.js     marked and DOMPurify, for the demo's Markdown preview
#   quill.js       Quill 2 and quill-cursors, what web/static/js/quill.js
#                  and the demo's rich-text editor use
#   quill.css      Quill's Snow theme and quill-cursors' stylesheet
#   LICENSES.txt   the licences of the packages
#   VERSIONS.txt   the packages with their versions, and the
#                  SHA-256 of each bundle (web's TestVendoredBundles checks
#                  the embedded files against it)
#
# The bundles are committed, so `go run ./cmd/tandem serve` needs no npm.
# Run this (it needs Node and npm) after changing a version here, then
# commit the result.
set -euo pipefail
cd "$(dirname "$0")"
out=../../internal/web/static/js/vendor
mkdir -p "$out"
npm ci --no-audit --no-fund --loglevel=error
build() {
  ./node_modules/.bin/esbuild "$1" --bundle --format=esm --minify --legal-comments=eof \
    --target=es2020 --log-level=warning --outfile="$out/$2"
}
build codemirror-entry.mjs codemirror.js
build preview-entry.mjs preview.js
build quill-entry.mjs quill.js
./node_modules/.bin/esbuild quill-entry.css --bundle --minify --legal-comments=eof --log-level=warning --outfile="$out/quill.css"
{
  echo "# Vendored by scripts/vendor/build.sh from npm; do not edit by hand."
  echo "# npm packages installed to build them, with versions (package-lock.json):"
  node -e '
    const lock = require("./package-lock.json")
    for (const [p, v] of Object.entries(lock.packages).sort()) {
      if (!p || v.dev) continue
      console.log(p.replace(/^node_modules\//, "") + "@" + v.version)
    }'
  echo "# sha256 of the bundles:"
  (cd "$out" && sha256sum codemirror.js preview.js quill.js quill.css)
} > "$out/VERSIONS.txt"
# Their licences travel with them (MIT, BSD-3-Clause for Quill, and
# DOMPurify's MPL-2.0 or Apache-2.0).
node -e '
  const fs = require("fs")
  const lock = require("./package-lock.json")
  for (const [p, v] of Object.entries(lock.packages).sort()) {
    if (!p || v.dev) continue
    const f = fs.readdirSync(p).find(n => /^licen[cs]e/i.test(n))
    console.log("=".repeat(72) + "\n" + p.replace(/^node_modules\//, "") + "@" + v.version + " (" + v.license + ")\n" + "=".repeat(72))
    console.log(f ? fs.readFileSync(p + "/" + f, "utf8").trim() + "\n" : "(no licence file in the package)\n")
  }' > "$out/LICENSES.txt"
echo "wrote $out/codemirror.js, $out/preview.js, $out/quill.js, $out/quill.css, $out/VERSIONS.txt, $out/LICENSES.txt"
