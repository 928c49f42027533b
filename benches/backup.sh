#!/usr/bin/env bash
# Benchmark: dockyard backup to a local directory vs `docker cp <c>:/srv/media - | zstd -3 -T0 > out`
# on ~1 GiB of media-like data, in one run. Prints medians, their ratio, and dockyard's peak RSS at
# two volume sizes. Usage: benches/backup.sh [runs]   (default 5; .ci/lib.sh starts dockerd if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
source .ci/lib.sh
source benches/lib.sh
need_packages
bench_tools
ensure_docker
trap 'docker rm -f -v "$name" >/dev/null 2>&1; rm -rf "$work"; stop_started' EXIT

cargo build --release --locked -q
bin=$PWD/target/x86_64-unknown-linux-gnu/release/dockyard
work=$(mktemp -d)
name=dyb-bench-$$
image=dockyard-test/busybox:1
docker image inspect $image >/dev/null 2>&1 || cargo test -q --test backup_restore container_without_volumes >/dev/null  # its App builds the test image

docker run -d --name "$name" --network none -v /srv/media $image sleep 100000 >/dev/null
fill_media "$name" 1
total=$(media_mib "$name")
files=$(docker exec "$name" sh -c 'find /srv/media -type f | wc -l')
echo "volume: ${total} MiB in ${files} files; ${runs} runs each, alternating"

dy=(); pipe=(); rss=(); rss_small=()
for _ in $(seq 1 "$runs"); do
  rm -rf "$work/d" "$work/out.tar.zst"
  timed dy peak_rss rss "$bin" backup "$name" --to "$work/d" --no-progress >/dev/null
  timed pipe sh -c "docker cp '$name:/srv/media' - | zstd -3 -T0 -q > '$work/out.tar.zst'"
  dsize=$(stat -c %s "$work"/d/*.tar.zst); psize=$(stat -c %s "$work/out.tar.zst")
done
for _ in $(seq 1 "$runs"); do
  rm -rf "$work/d"
  peak_rss rss_small "$bin" backup "$name" --path /srv/media/set1/docs --to "$work/d" --no-progress >/dev/null
done
md=$(median "${dy[@]}"); mp=$(median "${pipe[@]}")
small=$(docker exec "$name" du -sm /srv/media/set1/docs | cut -f1)
printf '\n%-44s %10s %10s %12s %14s\n' "command" "median s" "MiB/s" "output MiB" "peak RSS MiB"
printf '%-44s %10.2f %10.1f %12.1f %14.1f\n' "dockyard backup (level 3, all cores)" "$md" "$(echo "$total / $md" | bc -l)" "$(echo "$dsize/1048576" | bc -l)" "$(median "${rss[@]}")"
printf '%-44s %10.2f %10.1f %12.1f %14s\n' "docker cp | zstd -3 -T0 > out" "$mp" "$(echo "$total / $mp" | bc -l)" "$(echo "$psize/1048576" | bc -l)" "-"
printf '%-44s %10s %10s %12s %14.1f\n' "dockyard backup --path .../docs (${small} MiB)" "" "" "" "$(median "${rss_small[@]}")"
printf '\nratio (pipeline median / dockyard median): %.2f  (>= 1.0 means dockyard is at least as fast)\n' "$(echo "$mp / $md" | bc -l)"
echo "runs: dockyard ${dy[*]} | pipeline ${pipe[*]}"
