# Shared by run.sh and serve.sh: who this instance is, and how it logs.
# shellcheck shell=sh disable=SC2034  # sourced: its variables are used elsewhere

# dkos injects DKOS_INSTANCE; a bare `docker run` falls back to the hostname.
INSTANCE=${DKOS_INSTANCE:-$(hostname)}
# The spec version dkos deployed, else the version baked into the image.
VERSION=${DKOS_VERSION:-$DEMO_VERSION}
STATE=/tmp/demo             # runtime flags (unhealthy) live here
STDOUT=/proc/1/fd/1         # the container's stdout, whoever PID 1 is

# is_uint VALUE: true when VALUE is a non-negative integer.
is_uint() {
	case $1 in '' | *[!0-9]*) return 1 ;; esac
}

# log_lines N: print "<instance> line 1" .. "<instance> line N" to stdout.
# awk instead of a shell loop: thousands of lines take milliseconds.
log_lines() {
	seq "$1" | awk -v id="$INSTANCE" '{ print id " line " $1 }'
}
