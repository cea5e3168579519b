#!/bin/sh
# shellcheck shell=sh source=lib.sh disable=SC3043,SC3045  # busybox ash has local, read -t
# Answers one HTTP request; stdin and stdout are the client's socket.
# busybox httpd would run CGI only under /cgi-bin/ (and Debian's build has no
# reverse proxy to map /health there), so the demo parses HTTP itself: one
# request per connection, always "Connection: close".
. /app/lib.sh
set -f                      # the query string is split on "&": no globbing
CR=$(printf '\r')

# respond STATUS BODY [CONTENT_TYPE]
respond() {
	printf 'HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
		"$1" "${3:-text/plain}" "${#2}" "$2"
}

# param NAME: the value of NAME in the query string (no URL decoding: the
# demo's parameters are numbers and words).
param() {
	local IFS='&' kv
	for kv in $query; do
		case $kv in "$1="*) echo "${kv#*=}"; return ;; esac
	done
}

# uint_param NAME DEFAULT MAX: an integer parameter, defaulted and bounded.
uint_param() {
	local v
	v=$(param "$1")
	is_uint "$v" || v=$2
	[ "$v" -le "$3" ] || v=$3
	echo "$v"
}

# Request line, then headers up to the blank line. Headers must be read
# even though they are ignored: closing a socket with unread input makes
# the kernel send a reset, and the client may lose the response.
read -r -t 10 _method target _proto || exit 0
length=0
while read -r -t 10 line; do
	line=${line%"$CR"}
	[ -z "$line" ] && break
	case $line in [Cc]ontent-[Ll]ength:*) length=${line#*:}; length=${length# } ;; esac
done
is_uint "$length" && [ "$length" -gt 0 ] && head -c "$length" >/dev/null
path=${target%%\?*}
query=
case $target in *\?*) query=${target#*\?} ;; esac

case $path in
/)
	if [ "$(param format)" = json ]; then
		healthy=true
		[ -e "$STATE/unhealthy" ] && healthy=false
		respond "200 OK" "$(printf '{"instance": "%s", "app": "%s", "version": "%s", "image_version": "%s", "hostname": "%s", "healthy": %s}' \
			"$INSTANCE" "${DKOS_APP:-}" "$VERSION" "$DEMO_VERSION" "$(hostname)" "$healthy")
" application/json
	else
		respond "200 OK" "${GREETING:-hello} from $INSTANCE version $VERSION image_version $DEMO_VERSION
"
	fi
	;;
/health)
	if [ -e "$STATE/unhealthy" ]; then
		respond "500 Internal Server Error" "unhealthy
"
	else
		respond "200 OK" "ok
"
	fi
	;;
/slow)
	# Fractions are fine ("0.5"); bounded so a typo cannot pin a connection.
	seconds=$(param seconds)
	case $seconds in '' | *[!0-9.]*) seconds=1 ;; esac
	sleep "$seconds" 2>/dev/null || sleep 1
	respond "200 OK" "slow answer after $seconds s from $INSTANCE
"
	;;
/control/unhealthy)
	touch "$STATE/unhealthy"
	respond "200 OK" "$INSTANCE is now unhealthy
"
	;;
/control/healthy)
	rm -f "$STATE/unhealthy"
	respond "200 OK" "$INSTANCE is now healthy
"
	;;
/control/burn)
	seconds=$(uint_param seconds 30 600)
	# A busy shell loop keeps one core at 100 %; timeout bounds it. Its
	# output is detached from the socket so this response can complete.
	timeout "$seconds" sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &
	respond "200 OK" "$INSTANCE burns one core for $seconds s
"
	;;
/control/log)
	n=$(uint_param n 10 100000)
	log_lines "$n" >"$STDOUT"
	respond "200 OK" "$INSTANCE printed $n lines
"
	;;
/control/crash)
	code=$(uint_param code 1 255)
	echo "$code" >"$STATE/crash"
	respond "200 OK" "$INSTANCE exits with code $code
"
	kill -USR1 "$DEMO_MAIN_PID"
	;;
*)
	respond "404 Not Found" "not found: $path
"
	;;
esac
