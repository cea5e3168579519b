#!/usr/bin/env bash
# Sets a Debian 12 machine up for dkos development: the Debian packages dkos
# drives, the virtualenv, a Docker engine that answers, and the demo images.
# Idempotent: a second run only checks, and takes about a second.
set -euo pipefail

cd "$(dirname "$0")/.."

say() { echo "setup: $*"; }

sudo=
if ((EUID != 0)); then sudo=sudo; fi

# --- Debian packages --------------------------------------------------------
# wrk is no part of dkos: it is the load generator of bench/.
packages=(docker.io busybox-static haproxy wrk)
missing=()
for package in "${packages[@]}"; do
	# The status `dpkg -s` shows; its exit code alone also accepts a removed
	# package whose config files remain.
	if [[ $(dpkg-query -W -f='${Status}' "$package" 2>/dev/null) != "install ok installed" ]]; then
		missing+=("$package")
	fi
done
if ((${#missing[@]})); then
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -q
	$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
else
	say "Debian packages present"
fi

# --- Python virtualenv ------------------------------------------------------
if [[ ! -x .venv/bin/python ]]; then
	say "creating .venv"
	python3 -m venv .venv
fi
# The stamp is touched after a successful install; a newer pyproject.toml
# (new dependencies) makes it stale.
if [[ .venv/.installed -nt pyproject.toml ]]; then
	say "python packages up to date"
else
	say "installing python packages into .venv"
	.venv/bin/pip install -q -e '.[dev]'
	touch .venv/.installed
fi

# --- Docker engine ----------------------------------------------------------
run=/var/run
containerd_dir=$run/docker/containerd
dockerd_log=/var/log/dkos-dockerd.log

docker_answers() { timeout 5 docker info >/dev/null 2>&1; }

# recorded_alive PIDFILE NAME: the pid recorded in PIDFILE is a live process
# called NAME. A dockerd killed in an earlier session leaves its pid file
# behind, and after a reboot that pid may belong to another program: both
# count as dead.
recorded_alive() {
	local pid comm stat
	pid=$(cat "$1" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	read -r comm stat < <(ps -o comm=,stat= -p "$pid") || return 1
	[[ $comm == "$2" && $stat != Z* ]]
}

# Removes what a dead dockerd and containerd left behind. dockerd refuses to
# start while its pid file names a live process, and it reuses a containerd
# whose pid file names a live one, so only dead owners' files go.
remove_stale_files() {
	local file
	if ! recorded_alive "$containerd_dir/containerd.pid" containerd; then
		for file in containerd.pid containerd.sock containerd.sock.ttrpc containerd-debug.sock; do
			if [[ -e $containerd_dir/$file ]]; then
				say "removing stale $containerd_dir/$file"
				$sudo rm -f "$containerd_dir/$file"
			fi
		done
	fi
	for file in "$run/docker.pid" "$run/docker.sock"; do
		if [[ -e $file ]]; then
			say "removing stale $file"
			$sudo rm -f "$file"
		fi
	done
}

if docker_answers; then
	say "docker engine answers"
else
	started=
	if recorded_alive "$run/docker.pid" dockerd; then
		say "dockerd (pid $(cat "$run/docker.pid")) runs but does not answer yet; waiting"
	else
		remove_stale_files
		say "starting dockerd (log: $dockerd_log)"
		# Its own session, no hangup signal and no file descriptor but the
		# log: it outlives this script, and no pipe it inherited keeps the
		# terminal or CI job that ran us waiting for it.
		(
			for fd in "/proc/$BASHPID/fd/"*; do
				fd=${fd##*/}
				if ((fd > 2)); then eval "exec $fd>&-"; fi
			done 2>/dev/null
			exec $sudo setsid nohup dockerd >>"$dockerd_log" 2>&1 </dev/null
		) &
		started=$!
	fi
	deadline=$((SECONDS + 60))
	until docker_answers; do
		if ((SECONDS >= deadline)) || { [[ -n $started ]] && ! kill -0 "$started" 2>/dev/null; }; then
			say "docker engine did not come up; the end of $dockerd_log:" >&2
			tail -n 30 "$dockerd_log" >&2 || true
			exit 1
		fi
		sleep 1
	done
	say "docker engine answers (dockerd pid $(cat "$run/docker.pid" 2>/dev/null || echo '?'))"
fi

# --- demo images ------------------------------------------------------------
scripts/build-images.sh

say "done"
