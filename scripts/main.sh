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

# shellcheck source=scripts/daemon.sh
. scripts/daemon.sh
# The daemon creates the run itself on first start.
daemon_start - --window "$WINDOW" --run-preset "$PRESET"
"$BIN/replayctl" status
echo "watch it live in a browser: $BIN/replayctl ui --open (in another terminal)"
echo "following the run; Ctrl-C stops the daemon (a later 'make run' resumes it)"
if "$BIN/replayctl" wait; then
	"$BIN/replayctl" status
	echo "the run is done; the daemon keeps serving until Ctrl-C"
	wait "$daemon"
else
	"$BIN/replayctl" status 2>/dev/null || true # the daemon may have stopped with us (Ctrl-C reaches the group)
fi
