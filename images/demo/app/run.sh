#!/bin/sh
# shellcheck source=lib.sh
# The demo app's main process: reads the behaviour switches from the
# environment, serves HTTP on $PORT through busybox nc (one serve.sh per
# connection) and shuts down gracefully on SIGTERM.
#
# It must behave both under Docker's --init (docker-init is PID 1 and forwards
# SIGTERM here) and as PID 1 itself (a PID 1 without a handler ignores SIGTERM
# and `docker stop` would wait its full timeout).
. /app/lib.sh
PORT=${PORT:-8080}
DRAIN_LIMIT=30              # seconds in-flight requests get after SIGTERM

mkdir -p "$STATE"
rm -f "$STATE/unhealthy"
echo "demo $INSTANCE version $VERSION (image $DEMO_VERSION) starting on :$PORT"

if is_uint "${LOG_LINES:-}"; then log_lines "$LOG_LINES"; fi
# "An app that exits at once", after its start lines so they reach the logs.
if [ "${CRASH:-0}" = 1 ] || [ -n "${EXIT_CODE:-}" ]; then
	echo "demo $INSTANCE exiting at once with code ${EXIT_CODE:-1}" >&2
	exit "${EXIT_CODE:-1}"
fi
if [ "${EXIT_AFTER_LOG:-0}" = 1 ]; then exit 0; fi

if [ "${UNHEALTHY:-0}" = 1 ]; then touch "$STATE/unhealthy"; fi
helpers=                    # pids of background helpers, split on purpose
if is_uint "${UNHEALTHY_AFTER:-}"; then
	(sleep "$UNHEALTHY_AFTER" && touch "$STATE/unhealthy") &
	helpers="$helpers $!"
fi
if [ -n "${LOG_EVERY:-}" ]; then
	# A steady printer: one numbered line every LOG_EVERY seconds, forever.
	(i=0; while sleep "$LOG_EVERY"; do i=$((i + 1)); echo "$INSTANCE line $i"; done) &
	helpers="$helpers $!"
fi

# in_flight: how many serve.sh processes are answering a request. The
# bracket keeps grep from matching its own command line; zombies have an
# empty cmdline, so they do not count.
in_flight() {
	grep -ls '[s]erve\.sh' /proc/[0-9]*/cmdline | wc -l
}

# SIGTERM: stop listening at once (new connections are refused), let the
# requests under way finish, bounded by DRAIN_LIMIT, then exit 0.
on_term() {
	# shellcheck disable=SC2086
	kill "$listener" $helpers 2>/dev/null
	ticks=$((DRAIN_LIMIT * 20))
	while [ "$(in_flight)" -gt 0 ] && [ "$ticks" -gt 0 ]; do
		sleep 0.05
		ticks=$((ticks - 1))
	done
	echo "demo $INSTANCE stopped"
	exit 0
}

# /control/crash writes the exit code and sends USR1: exit at once, no drain.
on_crash() {
	code=$(cat "$STATE/crash" 2>/dev/null)
	echo "demo $INSTANCE crashing with code ${code:-1}" >&2
	# shellcheck disable=SC2086
	kill "$listener" $helpers 2>/dev/null
	exit "${code:-1}"
}

trap on_term TERM INT
trap on_crash USR1
export DEMO_MAIN_PID=$$   # serve.sh signals us through it
# busybox nc with -l given twice or more keeps listening and starts serve.sh
# for every connection, with the socket as its stdin and stdout. It passes
# the number of l's to listen() as the backlog: 2 dropped SYNs under load
# (1 s retransmits), so give it 128.
listen=-$(printf 'l%.0s' $(seq 128))
nc "$listen" -p "$PORT" -e /app/serve.sh </dev/null &
listener=$!
# `wait` returns early when a trapped signal arrives; the trap then exits.
# If nc itself dies (port taken), we exit with its status.
wait "$listener"
