#!/usr/bin/env bash
# Issue 26: a database dump streamed into a backup (`backup --dump`), against the same dump piped
# by hand (`docker exec DB GEN | zstd -3 -T2 > file`, what an operator would run without
# dockyard), alternating, in the same run. The dump is `exec:` of a generator in a busybox
# container: SQL COPY-like rows of ids, user names, upload paths, captions and times, with
# every fourth caption longer, cut at SIZE bytes (default 5 GiB): text that compresses as a real
# dump does (about 8:1). The backed-up container holds a small
# volume; what is measured is the dump. Prints medians, the ratio to the pipe, the bytes
# written, dockyard's peak RSS, and the target (RSS <= 64 MiB for 5 GiB).
# Usage: benches/dumps.sh [DOCKYARD_BIN] [runs] [SIZE bytes]
#   (default target/x86_64-unknown-linux-gnu/release/dockyard, 3 runs, 5368709120)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/x86_64-unknown-linux-gnu/release/dockyard}") runs=${2:-3} size=${3:-5368709120}
source .ci/lib.sh
source benches/lib.sh
need_packages
bench_tools
command -v jq >/dev/null || apt-get install -y -qq jq >/dev/null
command -v zstd >/dev/null || apt-get install -y -qq zstd >/dev/null
ensure_docker
work=$(mktemp -d)
name=dyb-dump-$$
image=dockyard-test/busybox:1
trap 'docker rm -f -v "$name" "$name-db" >/dev/null 2>&1; rm -rf "$work"; stop_started' EXIT
docker image inspect $image >/dev/null 2>&1 || cargo test -q --test backup_restore container_without_volumes >/dev/null
docker run -d --name "$name" --network none -v /srv/media $image sleep 100000 >/dev/null
docker exec "$name" sh -c 'echo upload > /srv/media/photo.jpg'
docker run -d --name "$name-db" --network none $image sleep 100000 >/dev/null
# 32 MiB of rows made once in the database container's /tmp (awk is slow), then repeated: zstd's
# 2 MiB window at level 3 never sees a repeat, so it compresses as the rows themselves do.
docker exec "$name-db" sh -c 'awk "BEGIN { srand(1); for (i = 0; i < 400000; i++) printf \"%d\tuser%d\t/media/photos/%x.jpg\t%s\t2026-11-%02d %02d:%02d:%02d\n\", i, int(rand()*100000), int(rand()*1e12), (i % 4 ? \"short\" : \"a longer caption with a few words for upload \" i), 1 + i % 28, i % 24, i % 60, (i * 7) % 60 }" | head -c 33554432 > /tmp/rows'
gen='while cat /tmp/rows; do :; done | head -c '"$size"
b_dy=() b_pipe=() rss=() w_dy=() w_pipe=()
for i in $(seq 1 "$runs"); do
  order="dockyard pipe"
  [ $((i % 2)) = 0 ] && order="pipe dockyard"
  for how in $order; do
    rm -rf "$work/d" "$work/pipe.zst"
    sync
    if [ "$how" = dockyard ]; then
      timed b_dy peak_rss rss "$bin" backup "$name" --to "$work/d" --dump "$name-db:exec:$gen" \
        --no-progress --json >"$work/out.json"
      w_dy+=("$(jq -r .backup.size "$work/out.json")")
      [ "$(jq -r '.backup.dumps[0].size' "$work/out.json")" = "$size" ] || { echo "the dump is not $size bytes" >&2; exit 1; }
    else
      timed b_pipe sh -c "docker exec $name-db sh -c '$gen' | zstd -q -3 -T2 > $work/pipe.zst"
      w_pipe+=("$(stat -c %s "$work/pipe.zst")")
    fi
  done
done
ratio() { printf %.3f "$(echo "$1 / $2" | bc -l)"; }
bp=$(median "${b_pipe[@]}") bd=$(median "${b_dy[@]}")
printf '\ndump of %s bytes (SQL-like text); %s runs each, alternating\n' "$size" "$runs"
printf '%-44s %9s %7s %14s %8s   %s\n' "row" "median s" "ratio" "bytes written" "RSS MiB" "target"
printf '%-44s %9.2f %7s %14.0f %8s   %s\n' "docker exec | zstd -3 -T2 > file (by hand)" "$bp" "1.000" "$(median "${w_pipe[@]}")" "-" "-"
printf '%-44s %9.2f %7s %14.0f %8.1f   %s\n' "backup --dump (into the archive)" "$bd" "$(ratio "$bd" "$bp")" "$(median "${w_dy[@]}")" "$(median "${rss[@]}")" "RSS <= 64"
echo
echo "runs: by hand ${b_pipe[*]} | dockyard ${b_dy[*]} | RSS ${rss[*]}"
