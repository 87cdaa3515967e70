#!/usr/bin/env bash
# The MLproject's entry points run `python -m rdbench ARGS` with the interpreter that runs
# `mlflow run` (so a virtualenv that is not activated works: its `rdbench` is not on PATH).
# `mlflow run` starts the entry point as `bash -c COMMAND`: walk up from this shell to the first
# Python process and use the interpreter path it was started with (its argv[0], which keeps the
# virtualenv, unlike /proc/PID/exe). Elsewhere, fall back to `rdbench`, then `python3 -m rdbench`.
set -euo pipefail
pid=$PPID
for _ in 1 2 3 4 5; do
    [ -r "/proc/$pid/cmdline" ] || break
    argv0=$(tr '\0' '\n' < "/proc/$pid/cmdline" | head -n 1)
    case "$(basename "$argv0")" in
        python*)
            case "$argv0" in
                /*) py=$argv0 ;;
                */*) py="$(readlink "/proc/$pid/cwd")/$argv0" ;;
                *) py=$(PATH="$(tr '\0' '\n' < "/proc/$pid/environ" | sed -n 's/^PATH=//p')" command -v "$argv0" || true) ;;
            esac
            if [ -n "${py:-}" ] && "$py" -c "import rdbench" 2>/dev/null; then
                exec "$py" -m rdbench "$@"
            fi
            break ;;
    esac
    pid=$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null || echo 1)
    [ "$pid" -gt 1 ] || break
done
if command -v rdbench >/dev/null 2>&1; then exec rdbench "$@"; fi
exec python3 -m rdbench "$@"
