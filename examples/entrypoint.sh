#!/usr/bin/env bash
# weightfs container entrypoint: mount the Truss model_cache lazily, wait
# until the listing is served, then start the model server. Reads then
# stream from the origin on demand (and a background prefetch fills the
# cache in the order loaders read), so the server starts loading while
# bytes are still arriving.
#
#   entrypoint.sh <server command and arguments...>
#
#   e.g. entrypoint.sh text-embeddings-router --port 7997 --model-id /app/model_cache/my_jina
#
# The script stays as the parent of both processes instead of exec'ing the
# server: with exec the server would become PID 1 and the daemon would never
# see the SIGTERM, so it could not unmount cleanly. On SIGTERM/SIGINT it
# stops the server first (it holds files open under the mount), then the
# daemon, which unmounts. If either process exits on its own, the other is
# stopped and the container exits with the server's status (1 when the
# daemon died first).
#
# Environment (default in brackets). weightfs itself also reads
# WEIGHTFS_CONFIG, WEIGHTFS_CACHE_DIR, WEIGHTFS_SECRETS_DIR,
# WEIGHTFS_DATA_DIR and WEIGHTFS_CONTROL_ADDR.
#   WEIGHTFS_BIN           the weightfs binary [weightfs]
#   WEIGHTFS_CONFIG        the Truss config.yaml [/app/config.yaml]
#   WEIGHTFS_MOUNTPOINT    where volume folders appear [/app/model_cache]
#   WEIGHTFS_CONTROL_ADDR  the daemon's control endpoint [127.0.0.1:9464]
#   WEIGHTFS_ARGS          extra `weightfs mount` flags, split on spaces
#                          (e.g. "--allow-other --memory-cache-mb 512")
#   WEIGHTFS_READY_TIMEOUT seconds to wait for the listing [600]
#   WEIGHTFS_WAIT_ALL      1: also wait until every file is cached and
#                          verified (`weightfs wait`, Truss's
#                          block_until_download_complete) before starting
#                          the server [0]
#   WEIGHTFS_WAIT_TIMEOUT  a `weightfs wait --timeout` value, e.g. 20m [none]
#   WEIGHTFS_STOP_TIMEOUT  seconds the server gets after SIGTERM before
#                          SIGKILL [20]
set -uo pipefail

: "${WEIGHTFS_BIN:=weightfs}"
: "${WEIGHTFS_CONFIG:=/app/config.yaml}"
: "${WEIGHTFS_MOUNTPOINT:=/app/model_cache}"
: "${WEIGHTFS_CONTROL_ADDR:=127.0.0.1:9464}"
: "${WEIGHTFS_ARGS:=}"
: "${WEIGHTFS_READY_TIMEOUT:=600}"
: "${WEIGHTFS_WAIT_ALL:=0}"
: "${WEIGHTFS_WAIT_TIMEOUT:=}"
: "${WEIGHTFS_STOP_TIMEOUT:=20}"
export WEIGHTFS_CONFIG WEIGHTFS_CONTROL_ADDR

log() { printf 'weightfs-entrypoint: %s\n' "$*" >&2; }

if [ "$#" -eq 0 ]; then
	log "usage: entrypoint.sh <server command...>"
	exit 64
fi

# ready asks the daemon's /readyz: 200 once the listing is served.
ready() {
	local addr=$WEIGHTFS_CONTROL_ADDR
	if [[ $addr == unix:* ]]; then
		curl -fs --max-time 2 --unix-socket "${addr#unix:}" http://localhost/readyz >/dev/null 2>&1
		return
	fi
	if command -v curl >/dev/null 2>&1; then
		curl -fs --max-time 2 "http://$addr/readyz" >/dev/null 2>&1
		return
	fi
	# No curl in the image: plain HTTP over bash's /dev/tcp, in a subshell
	# so a refused connection cannot upset this shell's descriptors.
	local host=${addr%:*} port=${addr##*:}
	if [ -z "$host" ] || [ "$host" = 0.0.0.0 ]; then host=127.0.0.1; fi
	(
		exec 3<>"/dev/tcp/$host/$port" || exit 1
		printf 'GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >&3
		IFS= read -r -t 2 status <&3 || exit 1
		[[ $status == "HTTP/1."?" 200"* ]]
	) 2>/dev/null
}

alive() { kill -0 "$1" 2>/dev/null; }

# stop sends SIGTERM to pid and waits up to secs for it, then SIGKILL.
stop() {
	local pid=$1 secs=$2 i
	alive "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < secs * 10; i++)); do
		alive "$pid" || return 0
		sleep 0.1
	done
	log "pid $pid did not stop within ${secs}s of SIGTERM; killing it"
	kill -KILL "$pid" 2>/dev/null
}

term=0
trap 'term=1' TERM INT

# shellcheck disable=SC2086 # WEIGHTFS_ARGS is a list of flags
"$WEIGHTFS_BIN" mount --mountpoint "$WEIGHTFS_MOUNTPOINT" $WEIGHTFS_ARGS &
wfs=$!

shutdown() {
	stop "$wfs" 30
	wait "$wfs" 2>/dev/null
}

deadline=$((SECONDS + WEIGHTFS_READY_TIMEOUT))
until ready; do
	if ! alive "$wfs"; then
		wait "$wfs"
		rc=$?
		log "weightfs mount exited (status $rc) before its listing was served"
		exit $((rc == 0 ? 1 : rc))
	fi
	if ((term)); then
		shutdown
		exit 143
	fi
	if ((SECONDS >= deadline)); then
		log "weightfs was not ready after ${WEIGHTFS_READY_TIMEOUT}s (WEIGHTFS_READY_TIMEOUT); stopping"
		shutdown
		exit 1
	fi
	sleep 0.2
done
log "listing served under $WEIGHTFS_MOUNTPOINT"

if [ "$WEIGHTFS_WAIT_ALL" = 1 ]; then
	wait_args=()
	[ -n "$WEIGHTFS_WAIT_TIMEOUT" ] && wait_args=(--timeout "$WEIGHTFS_WAIT_TIMEOUT")
	"$WEIGHTFS_BIN" wait ${wait_args[@]+"${wait_args[@]}"} &
	waiter=$!
	while alive "$waiter" && alive "$wfs" && ((!term)); do
		sleep 0.2
	done
	if ((term)) || ! alive "$wfs"; then
		stop "$waiter" 5
		shutdown
		exit $((term ? 143 : 1))
	fi
	wait "$waiter"
	rc=$?
	# 4: every file is verified now, but some were served bad before; only
	# processes that read them then must reload, and the server starts now.
	if ((rc != 0 && rc != 4)); then
		log "weightfs wait failed (exit $rc): not every file could be cached and verified"
		shutdown
		exit 1
	fi
fi

"$@" &
srv=$!
# Poll rather than `wait -n`: a trapped signal interrupts `wait` at once,
# and this works with the bash of any image.
while alive "$srv" && alive "$wfs" && ((!term)); do
	sleep 0.5 &
	wait $! 2>/dev/null
done

if ((term)); then
	log "signal received: stopping the server, then unmounting"
fi
if ! alive "$wfs" && alive "$srv"; then
	log "weightfs exited: stopping the server (the mount is gone)"
	stop "$srv" "$WEIGHTFS_STOP_TIMEOUT"
	wait "$srv" 2>/dev/null
	shutdown
	exit 1
fi
stop "$srv" "$WEIGHTFS_STOP_TIMEOUT"
wait "$srv"
rc=$?
shutdown
exit "$rc"
