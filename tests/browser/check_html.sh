#!/usr/bin/env bash
# check_html.sh: check a self-contained HTML report in a real headless browser.
#
# Usage:  tests/browser/check_html.sh REPORT.html [MIN_IMAGES]
#
# The report (as `python -m fastload.report ... -o report.html` writes it) must
# be one HTML file that needs nothing else: PNGs inline as data:image/png;base64
# <img> tags, tables, headings, no JavaScript, nothing fetched. This script
# opens it in Debian's chromium (headless, offline) and proves that
#   1. the page loads from the file alone;
#   2. every <img> is a data:image/ URI that decodes: complete, naturalWidth > 0
#      and naturalHeight > 0, img.decode() resolves, and the bytes decode
#      completely (a corrupt or cut-off PNG still has a size, so the harness
#      also decodes every image with WebCodecs' ImageDecoder);
#   3. there are at least MIN_IMAGES <img> elements (default 1);
#   4. there is at least one <table>;
#   5. nothing is fetched: no <script>, no event handler attribute, every URL
#      the browser would fetch by itself (src, srcset, <link href>, CSS url(),
#      ...) is a data: URI or a #fragment (a hyperlink, <a href>, may point
#      anywhere: it is fetched only when clicked), the report's
#      Resource Timing list is empty, and chromium's net log shows no request
#      started by the page. Chromium runs with its proxy set to a closed port
#      and every host name mapped to "not found", so even a request that got
#      that far would fail instead of leaving the machine.
#
# How: tests/browser/check.html, a harness page, is copied into a temporary
# directory next to a copy of the report. chromium --dump-dom opens
# check.html?report=report.html&min=N; the harness loads the report into a
# sandboxed iframe (scripts off), inspects it and writes one verdict line into
# its own DOM, which this script reads back. A second chromium run takes a
# screenshot of the report itself for a person to look at.
#
# Output and exit status:
#   0  prints "REPORT-CHECK OK images=N tables=M"
#   1  prints "REPORT-CHECK FAIL <reason>" (the report failed a check, is
#      missing, or the browser gave no verdict: a chromium that exits without
#      printing the page is retried once first)
#   2  the check could not run: bad arguments, or chromium is not installed
#      (install it: apt-get install -y chromium)
# Notes go to stderr: the screenshot's path and how long the check took
# (the verdict run alone; the screenshot run adds about a second).
#
# Environment:
#   CHROMIUM               browser to run (default: chromium, else chromium-browser)
#   CHECK_HTML_SCREENSHOT  where to write the screenshot of the report
#                          (default: REPORT without .html + .screenshot.png;
#                          set it to the empty string to skip the screenshot)
#   CHECK_HTML_TIMEOUT     seconds each chromium run may take (default 60)
#   CHECK_HTML_KEEP        set to 1 to keep the temporary directory (the dumped
#                          DOM, chromium's log and net log) for debugging
#
# Flags that matter (chromium 156 on Debian 12, run as root):
#   --no-sandbox                     chromium refuses to start as root without it
#   --allow-file-access-from-files   otherwise the file:// harness may not read
#                                    the file:// report's document in its iframe
#   --virtual-time-budget            --dump-dom waits for it rather than for the
#                                    load event; the harness holds virtual time
#                                    until its verdict is in (see check.html)
#   --proxy-server=127.0.0.1:9 --host-resolver-rules='MAP * ~NOTFOUND'
#                                    no request can reach the network
#   --log-net-log                    lets this script see any request the page made
set -u

usage() {
  echo "usage: $0 REPORT.html [MIN_IMAGES]" >&2
  exit 2
}
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
report=$1
min_images=${2:-1}
case $min_images in
  '' | *[!0-9]*) echo "check_html.sh: MIN_IMAGES must be a non-negative integer, got '$min_images'" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
harness=$here/check.html
if [ ! -f "$harness" ]; then
  echo "check_html.sh: harness $harness is missing" >&2
  exit 2
fi

browser=${CHROMIUM:-}
if [ -z "$browser" ]; then
  for b in chromium chromium-browser; do
    if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
  done
fi
if [ -z "$browser" ] || ! command -v "$browser" >/dev/null 2>&1; then
  echo "check_html.sh: chromium is not installed; install it: apt-get install -y chromium" >&2
  exit 2
fi

fail() {
  echo "REPORT-CHECK FAIL $*"
  exit 1
}
if [ ! -f "$report" ] || [ ! -r "$report" ]; then
  fail "report file not found or unreadable: $report"
fi
if [ ! -s "$report" ]; then
  fail "report file is empty: $report"
fi

timeout_s=${CHECK_HTML_TIMEOUT:-60}
default_shot=${report%.[hH][tT][mM][lL]}
default_shot=${default_shot%.[hH][tT][mM]}.screenshot.png
screenshot=${CHECK_HTML_SCREENSHOT-$default_shot}

work=$(mktemp -d "${TMPDIR:-/tmp}/check_html.XXXXXX") || exit 2
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  if [ "${CHECK_HTML_KEEP:-0}" = 1 ]; then
    echo "check_html.sh: kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
cp "$harness" "$work/check.html"
cp "$report" "$work/report.html"

# The same flags for both runs: headless, offline, a throwaway profile, quiet.
# shellcheck disable=SC2054  # the comma in --window-size is chromium's
common=(
  --headless=new
  --no-sandbox
  --disable-gpu
  --disable-dev-shm-usage
  --no-first-run
  --no-default-browser-check
  --disable-extensions
  --disable-sync
  --disable-background-networking
  --disable-component-update
  --disable-domain-reliability
  --no-pings
  --dns-prefetch-disable
  --hide-scrollbars
  --proxy-server=127.0.0.1:9
  '--proxy-bypass-list=<-loopback>'
  '--host-resolver-rules=MAP * ~NOTFOUND'
  --allow-file-access-from-files
  --window-size=1400,3000
)

# The harness writes exactly one <pre id="verdict"> line; undo HTML escaping.
read_verdict() {
  sed -n 's|.*<pre id="verdict">\(.*\)</pre>.*|\1|p' "$work/dom.html" | head -n 1 |
    sed -e 's/&lt;/</g' -e 's/&gt;/>/g' -e 's/&quot;/"/g' -e "s/&#39;/'/g" \
        -e 's/&nbsp;/ /g' -e 's/&amp;/\&/g'
}

# A browser that dies without printing the page gets one more try; a verdict,
# even PENDING, is final.
start=$(date +%s.%N)
for attempt in 1 2; do
  rm -rf "$work/profile" "$work/netlog.json"
  timeout -k 5 "$timeout_s" "$browser" "${common[@]}" \
    --user-data-dir="$work/profile" \
    --log-net-log="$work/netlog.json" \
    --virtual-time-budget=10000 \
    --dump-dom "file://$work/check.html?report=report.html&min=$min_images" \
    >"$work/dom.html" 2>"$work/chromium.log"
  rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    fail "chromium did not finish within ${timeout_s}s"
  fi
  verdict=$(read_verdict)
  [ -n "$verdict" ] && break
  echo "check_html.sh: chromium gave no verdict (exit status $rc), attempt $attempt of 2; its log ends:" >&2
  tail -n 5 "$work/chromium.log" >&2
done
end=$(date +%s.%N)
if [ -z "$verdict" ]; then
  fail "chromium gave no verdict (exit status $rc; is the harness intact?)"
fi
case $verdict in
  "REPORT-CHECK PENDING"*) fail "the harness did not finish (${verdict#REPORT-CHECK })" ;;
  "REPORT-CHECK OK "* | "REPORT-CHECK FAIL "*) ;;
  *) fail "unexpected verdict: $verdict" ;;
esac

# Requests the page itself started have the file:// origin (or the opaque
# origin "null") as initiator; chromium's own background requests have none.
# Each net log event is one line; params are in alphabetical order.
fetched=""
if [ -f "$work/netlog.json" ]; then
  fetched=$(grep -oP '"initiator":"(file:[^"]*|null)".*?"url":"\K[^"]*' "$work/netlog.json" |
    grep -v '^data:' | sort -u | head -n 3 | paste -sd ' ' -)
fi
if [ -n "$fetched" ] && [ "${verdict#REPORT-CHECK OK}" != "$verdict" ]; then
  verdict="REPORT-CHECK FAIL the page tried to fetch from the network: $fetched"
fi

if [ -n "$screenshot" ]; then
  case $screenshot in /*) shot_abs=$screenshot ;; *) shot_abs=$PWD/$screenshot ;; esac
  timeout -k 5 "$timeout_s" "$browser" "${common[@]}" \
    --user-data-dir="$work/profile-shot" \
    --screenshot="$work/screenshot.png" \
    "file://$work/report.html" >/dev/null 2>"$work/chromium-shot.log"
  if [ -s "$work/screenshot.png" ] && cp "$work/screenshot.png" "$shot_abs" 2>/dev/null; then
    echo "check_html.sh: screenshot of the report: $shot_abs" >&2
  else
    echo "check_html.sh: warning: could not write the screenshot to $shot_abs" >&2
  fi
fi

echo "check_html.sh: the check took $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')s in $browser ($("$browser" --version 2>/dev/null | head -n 1))" >&2
echo "$verdict"
case $verdict in
  "REPORT-CHECK OK "*) exit 0 ;;
  *) exit 1 ;;
esac
