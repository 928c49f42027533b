#!/usr/bin/env bash
# Issue 25: dockyard's peak RSS (and time) with a large file index: a volume of N empty files
# (default 1,000,000, in 1000 directories, made on the host through the volume's directory), a
# full backup (which writes an index of N entries), then an incremental backup of the unchanged
# volume (which reads the parent's N-entry index and writes its own). Target: peak RSS <= 64 MiB.
# Usage: benches/big_index.sh [DOCKYARD_BIN] [files]
#   (default target/x86_64-unknown-linux-gnu/release/dockyard, 1000000 files)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/x86_64-unknown-linux-gnu/release/dockyard}") n=${2:-1000000}
source .ci/lib.sh
source benches/lib.sh
need_packages
bench_tools
command -v jq >/dev/null || apt-get install -y -qq jq >/dev/null
ensure_docker
work=$(mktemp -d)
name=dyb-bigidx-$$
image=dockyard-test/busybox:1
trap 'docker rm -f -v "$name" >/dev/null 2>&1; rm -rf "$work"; stop_started' EXIT
docker image inspect $image >/dev/null 2>&1 || cargo test -q --test backup_restore container_without_volumes >/dev/null
docker run -d --name "$name" --network none -v /srv/media $image sleep 100000 >/dev/null
src=$(docker inspect -f '{{range .Mounts}}{{.Source}}{{end}}' "$name")
echo "making $n files in $src..."
python3 - "$src" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per = max(1, n // 1000)
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // per))
    if i % per == 0:
        os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "f%07d.txt" % i), "w").close()
PY
sleep 3
t_full=() t_inc=() rss_full=() rss_inc=()
timed t_full peak_rss rss_full "$bin" backup "$name" --to "$work/d" --incremental --no-progress --json >"$work/full.json"
timed t_inc peak_rss rss_inc "$bin" backup "$name" --to "$work/d" --incremental --no-progress --json >"$work/inc.json"
jq -e '.incremental.parent' "$work/inc.json" >/dev/null || { echo "the second backup was full: $(jq -r .incremental.full_because "$work/inc.json")" >&2; exit 1; }
printf '\n%s files; index %s entries, %s bytes stored\n' "$n" "$(jq .backup.index.entries "$work/full.json")" "$(jq .backup.index.size "$work/full.json")"
printf '%-40s %9s %9s   %s\n' row seconds "RSS MiB" target
printf '%-40s %9.2f %9.1f   %s\n' "backup (full, writes the index)" "${t_full[0]}" "${rss_full[0]}" "RSS <= 64"
printf '%-40s %9.2f %9.1f   %s\n' "backup --incremental, unchanged" "${t_inc[0]}" "${rss_inc[0]}" "RSS <= 64"
printf 'unchanged entries %s, archive %s bytes\n' "$(jq .incremental.unchanged "$work/inc.json")" "$(jq .backup.size "$work/inc.json")"
