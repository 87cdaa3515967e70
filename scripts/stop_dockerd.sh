#!/usr/bin/env bash
# Stop the engine scripts/start_dockerd.sh started (by its pidfile); its images stay on disk.
set -euo pipefail
run=${RDBENCH_DOCKERD_RUN:-/run/rdbench-docker}
[ -f "$run/dockerd.pid" ] || exit 0
pid=$(cat "$run/dockerd.pid")
kill "$pid" 2>/dev/null || exit 0
for _ in $(seq 1 40); do
    if ! kill -0 "$pid" 2>/dev/null; then
        # dockerd leaves its network-namespace mount behind
        umount "$run/exec/netns/default" 2>/dev/null || true
        exit 0
    fi
    sleep 0.5
done
echo "stop_dockerd: dockerd $pid still running after 20 s" >&2
