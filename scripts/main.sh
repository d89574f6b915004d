#!/usr/bin/env bash
# The main job: start replayd --window 256 on the default data directory with
# the paper's Fashion-MNIST run (preset fmnist-mlp) and follow its progress.
# Ctrl-C stops the follower and then the daemon, cleanly (SIGTERM); running it
# again resumes the run where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
WINDOW=${WINDOW:-256}
PRESET=${PRESET:-fmnist-mlp}

"$BIN/replayd" --window "$WINDOW" --run-preset "$PRESET" &
daemon=$!
stop() {
	trap - INT TERM EXIT
	if kill -0 "$daemon" 2>/dev/null; then
		echo "stopping replayd (pid $daemon)…"
		kill -TERM "$daemon" 2>/dev/null || true
		wait "$daemon" 2>/dev/null || true
	fi
}
trap stop INT TERM EXIT

# Wait for the daemon to answer (it creates the run itself on first start).
for _ in $(seq 1 100); do
	if "$BIN/replayctl" status >/dev/null 2>&1; then break; fi
	if ! kill -0 "$daemon" 2>/dev/null; then wait "$daemon"; exit 1; fi
	sleep 0.1
done
"$BIN/replayctl" status
echo "following the run; Ctrl-C stops the daemon (a later 'make run' resumes it)"
if "$BIN/replayctl" wait; then
	"$BIN/replayctl" status
	echo "the run is done; the daemon keeps serving until Ctrl-C"
	wait "$daemon"
else
	"$BIN/replayctl" status || true
fi
