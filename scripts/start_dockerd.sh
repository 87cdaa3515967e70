#!/usr/bin/env bash
# Start a private Docker engine for the Docker test (CI, or a developer machine as root)
# and print the line to export its address:
#   eval "$(bash scripts/start_dockerd.sh)"     # sets DOCKER_HOST
#   bash scripts/stop_dockerd.sh
# Needs root and `apt-get install -y docker.io`. Without a bridge or iptables (none
# are available in these machines): builds use --network host, runs --network none.
# Its images live in $RDBENCH_DOCKERD_ROOT/data and are kept between runs (layer cache).
set -euo pipefail
root=${RDBENCH_DOCKERD_ROOT:-/var/tmp/rdbench-docker}
run=${RDBENCH_DOCKERD_RUN:-/run/rdbench-docker}
sock="unix://$run/docker.sock"
if [ "$(id -u)" != 0 ]; then echo "start_dockerd: must run as root" >&2; exit 1; fi
command -v dockerd >/dev/null || { echo "start_dockerd: dockerd missing (apt-get install -y docker.io)" >&2; exit 1; }
mkdir -p "$root/data" "$run"
if ! DOCKER_HOST="$sock" timeout 5 docker version >/dev/null 2>&1; then
    rm -f "$run/docker.sock" "$run/dockerd.pid"
    nohup dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
        --data-root "$root/data" --exec-root "$run/exec" --pidfile "$run/dockerd.pid" \
        -H "$sock" >"$root/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        DOCKER_HOST="$sock" timeout 5 docker version >/dev/null 2>&1 && break
        sleep 0.5
    done
    DOCKER_HOST="$sock" docker version >/dev/null 2>&1 || {
        echo "start_dockerd: dockerd did not come up; last lines of $root/dockerd.log:" >&2
        tail -5 "$root/dockerd.log" >&2
        exit 1
    }
fi
echo "export DOCKER_HOST=$sock"
