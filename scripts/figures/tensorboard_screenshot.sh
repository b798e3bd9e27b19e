#!/usr/bin/env bash
# A screenshot of TensorBoard's scalars page, taken in headless Chromium (README figure).
#
#   bash scripts/figures/tensorboard_screenshot.sh runs/demo docs/img/tensorboard_demo.png [TAG_REGEX]
#
# Starts `tensorboard --logdir LOGDIR` on 127.0.0.1 only (a free port), waits until it
# answers, opens the scalars dashboard filtered to TAG_REGEX (default: the test metrics, the
# training loss, lr and grad norm) in `chromium --headless`, writes the PNG and stops
# TensorBoard again. RUNS_ONLY=1 shows the training runs only (a temporary copy of the event
# files of each <LOGDIR>/<run_id> holding a config.yaml), leaving out the stages under _data/.
set -euo pipefail
logdir=${1:?usage: $0 LOGDIR OUT.png [TAG_REGEX]}
out=${2:?usage: $0 LOGDIR OUT.png [TAG_REGEX]}
regex=${3:-^(vs_compute_MFLOPs/)?(test/ce_avg|test/ce_last|train/loss)$|^train/(lr|grad_norm)$}
root=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "error: no chromium found (apt-get install chromium)" >&2; exit 1; }
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [ "${RUNS_ONLY:-0}" = 1 ]; then  # a copy of the training runs' event files, same layout
    only=$(mktemp -d)
    (cd "$logdir" && for d in */; do
        [ -f "$d/config.yaml" ] || continue
        find "$d" -name 'events.out.tfevents*' -exec cp --parents {} "$only" \;
    done)
    logdir=$only
fi
"$py" -m tensorboard.main --logdir "$logdir" --host 127.0.0.1 --port "$port" \
    --reload_interval 0 > "${TMPDIR:-/tmp}/tensorboard_screenshot.$port.log" 2>&1 &
tb=$!
trap 'kill "$tb" 2>/dev/null; wait "$tb" 2>/dev/null || true' EXIT
for _ in $(seq 120); do
    curl -fs "http://127.0.0.1:$port/data/runs" > /dev/null 2>&1 && break
    sleep 1
done
curl -fs "http://127.0.0.1:$port/data/runs" || { echo "error: tensorboard did not answer" >&2; exit 1; }
echo
enc=$("$py" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$regex")
profile=$(mktemp -d)
"$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
    --window-size=1600,1100 --virtual-time-budget=30000 --screenshot="$out" \
    "http://127.0.0.1:$port/?darkMode=false#scalars&tagFilter=$enc&_smoothingWeight=0&_ignoreYOutliers=false" 2>/dev/null
rm -rf "$profile" ${only:+"$only"}
ls -l "$out"
