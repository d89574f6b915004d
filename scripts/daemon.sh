# Sourced by main.sh and reproduce.sh: start bin/replayd in the background,
# stop it cleanly (SIGTERM) on exit or Ctrl-C, and wait until it answers.
# Needs BIN; replayctl finds the daemon through REPLAYD_ADDR or its default.

# daemon_start LOG ARGS...: replayd ARGS with its log in LOG (- for the
# terminal). Sets $daemon. Exits with the log shown if replayd does not come up.
daemon_start() {
	local log=$1
	shift
	if [ "$log" = - ]; then
		"$BIN/replayd" "$@" &
	else
		"$BIN/replayd" "$@" 2>"$log" &
	fi
	daemon=$!
	trap daemon_stop INT TERM EXIT
	for _ in $(seq 1 100); do
		if "$BIN/replayctl" runs >/dev/null 2>&1; then
			return 0
		fi
		if ! kill -0 "$daemon" 2>/dev/null; then
			echo "replayd exited at start" >&2
			if [ "$log" != - ]; then cat "$log" >&2; fi
			exit 1
		fi
		sleep 0.1
	done
	echo "replayd did not answer within 10 s" >&2
	exit 1
}

# daemon_stop: SIGTERM, then wait for the daemon to finish writing.
daemon_stop() {
	trap - INT TERM EXIT
	if kill -0 "$daemon" 2>/dev/null; then
		echo "stopping replayd (pid $daemon)"
		kill -TERM "$daemon" 2>/dev/null || true
		wait "$daemon" 2>/dev/null || true
	fi
}
