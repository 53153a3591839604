#!/usr/bin/env bash
# Open the HTML leaderboard (benchmarks/site/index.html, from `dsdistill report --html`) in headless Chromium,
# save a screenshot, and fail when the page shows a script error or a broken image. The page's own script marks
# its body once loaded (data-loaded, data-broken-images, data-errors); this reads the DOM Chromium dumps.
# Not part of the tests (it needs Chromium: Debian's `apt-get install -y chromium`); a person runs it:
#   bash benchmarks/site_check.sh [PAGE] [SCREENSHOT]
set -euo pipefail
cd "$(dirname "$0")/.."
page="${1:-benchmarks/site/index.html}"
shot="${2:-benchmarks/results/site-check.png}"
browser="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$browser" ] || { echo "site_check: no chromium on PATH (apt-get install -y chromium)" >&2; exit 2; }
[ -f "$page" ] || { echo "site_check: no $page; run dsdistill report --html first" >&2; exit 2; }
# every picture the page names must exist beside it (a check that does not depend on the browser's timing)
missing=0
while read -r src; do
  [ -f "$(dirname "$page")/$src" ] || { echo "site_check: $page names a missing $src" >&2; missing=1; }
done < <(grep -o '<img src="[^"]*"' "$page" | sed 's/<img src="//; s/"$//')
[ "$missing" = 0 ] || exit 1
url="file://$(realpath "$page")"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update
       --disable-sync --no-first-run --user-data-dir="$profile" --hide-scrollbars --virtual-time-budget=10000
       --run-all-compositor-stages-before-draw)
"$browser" "${flags[@]}" --dump-dom "$url" > "$profile/dom.html" 2> "$profile/dump.log"
"$browser" "${flags[@]}" --window-size=1400,1800 --screenshot="$shot" "$url" 2> "$profile/shot.log"
body="$(grep -o '<body[^>]*>' "$profile/dom.html" | head -1)"
echo "site_check: $body"
[[ "$body" == *'data-loaded="yes"'* ]] || { echo "site_check: the page never finished loading" >&2; exit 1; }
[[ "$body" == *'data-broken-images="0"'* ]] || { echo "site_check: broken images on the page" >&2; exit 1; }
[[ "$body" == *'data-errors="0"'* ]] || { echo "site_check: the page reported errors" >&2; exit 1; }
[ -s "$shot" ] || { echo "site_check: no screenshot written" >&2; exit 1; }
images="$(grep -o '<img ' "$profile/dom.html" | wc -l)"
echo "site_check: ok, $images images, no broken image, no error; screenshot $shot"
