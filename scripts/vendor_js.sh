#!/usr/bin/env bash
# Vendor the explorer's graph-drawing library into the package (run by scripts/bootstrap.sh).
#
# `npm pack` fetches the pinned Cytoscape.js tarball from the npm registry into a temp dir; its
# minified build and its licence are copied into rdg_platform/serving/explore/vendor/ (git-ignored),
# so the page never downloads anything at run time. Re-running with the pin already in place is a no-op.
set -euo pipefail
PIN=${CYTOSCAPE_VERSION:-3.30.4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST="$ROOT/rdg_platform/serving/explore/vendor"
if [ -f "$DEST/VERSION" ] && [ "$(cat "$DEST/VERSION")" = "cytoscape@$PIN" ] && [ -f "$DEST/cytoscape.min.js" ]; then
  echo "vendor_js: cytoscape@$PIN already vendored"; exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "vendor_js: npm not found on PATH (needed once, to vendor cytoscape@$PIN for the explorer page)" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "cytoscape@$PIN" >/dev/null)
tar -xzf "$TMP"/cytoscape-"$PIN".tgz -C "$TMP"
mkdir -p "$DEST"
cp "$TMP/package/dist/cytoscape.min.js" "$DEST/cytoscape.min.js"
cp "$TMP/package/LICENSE" "$DEST/LICENSE"
echo "cytoscape@$PIN" > "$DEST/VERSION"
echo "vendor_js: cytoscape@$PIN -> $DEST"
