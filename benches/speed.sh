#!/usr/bin/env bash
# Issue 12's baseline: dockyard (the engine-archive path) beside the pipelines it should beat, on
# two volumes: a ~1 GiB media mix (300 incompressible ~3 MiB photos, 2000 ~40 KiB text documents,
# 20000 ~2 KiB thumbnails) and 30000 small 4 KiB text files. Alternating runs; prints medians,
# ratios (pipeline / dockyard: above 1 means dockyard is faster) and dockyard's peak RSS.
# Usage: benches/speed.sh [DOCKYARD_BIN] [runs]   (default target/release/dockyard, 5 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/dockyard}") runs=${2:-5}
source .ci/lib.sh
source benches/lib.sh
need_packages
bench_tools
command -v zstd >/dev/null || apt-get install -y -qq zstd >/dev/null
ensure_docker
work=$(mktemp -d)
name=dyb-speed-$$
image=dockyard-test/busybox:1
trap 'docker rm -f -v "$name" "$name-r" >/dev/null 2>&1; rm -rf "$work"; stop_started' EXIT
docker image inspect $image >/dev/null 2>&1 || cargo test -q --test backup_restore container_without_volumes >/dev/null

fill_mix() {
  docker exec "$1" sh -c '
    set -e; cd /srv/media; mkdir -p photos docs thumbs
    for i in $(seq 1 300); do head -c 3145728 /dev/urandom > photos/p$i.jpg; done
    awk "BEGIN { srand(7); for (f = 0; f < 2000; f++) { p = sprintf(\"docs/d%04d.txt\", f);
         for (i = 0; i < 760; i++) printf \"%d user%d GET /media/%x 200 %d ms\\n\", i, int(rand()*1000), int(rand()*1e9), int(rand()*5000) > p;
         close(p) } }"
    i=0; while [ $i -lt 20000 ]; do head -c 2048 /dev/urandom > thumbs/t$i.jpg; i=$((i + 1)); done'
}

fill_small() {
  docker exec "$1" sh -c '
    set -e; cd /srv/media; mkdir -p s
    awk "BEGIN { srand(11); for (f = 0; f < 30000; f++) { p = sprintf(\"s/f%05d.txt\", f);
         for (i = 0; i < 64; i++) printf \"%08x%08x%08x%08x%08x%08x%08x\\n\", rand()*4e9, rand()*4e9, rand()*4e9, rand()*4e9, rand()*4e9, rand()*4e9, rand()*4e9 > p;
         close(p) } }"'
}

row() { printf '%-44s %9.2f %9.1f %12s\n' "$1" "$2" "$(echo "$total / $2" | bc -l)" "$3"; }

for workload in mix small; do
  docker rm -f -v "$name" "$name-r" >/dev/null 2>&1 || true
  docker run -d --name "$name" --network none -v /srv/media $image sleep 100000 >/dev/null
  docker create --name "$name-r" --network none -v /srv/media $image sleep 100000 >/dev/null
  "fill_$workload" "$name"
  total=$(media_mib "$name")
  files=$(docker exec "$name" sh -c 'find /srv/media -type f | wc -l')
  b_dy=() b_pipe=() r_dy=() r_pipe=() rss_b=() rss_r=()
  for i in $(seq 1 "$runs"); do
    rm -rf "$work/dy" "$work/out.tar.zst"
    sync
    timed b_dy peak_rss rss_b "$bin" backup "$name" --to "$work/dy" --no-progress >/dev/null
    sync
    timed b_pipe sh -c "docker cp '$name:/srv/media' - | zstd -3 -T0 -q > '$work/out.tar.zst'"
    sync
    timed r_dy peak_rss rss_r "$bin" restore "$name-r" --from "$work/dy" --container "$name" --no-safety-backup --no-progress >/dev/null
    sync
    timed r_pipe sh -c "zstd -dc '$work/out.tar.zst' | docker cp - '$name-r:/srv/'"
  done
  bd=$(median "${b_dy[@]}") bp=$(median "${b_pipe[@]}") rd=$(median "${r_dy[@]}") rp=$(median "${r_pipe[@]}")
  printf '\n%s: %s MiB in %s files, %s runs each, alternating\n' "$workload" "$total" "$files" "$runs"
  printf '%-44s %9s %9s %12s\n' "command" "median s" "MiB/s" "peak RSS MiB"
  row "backup, dockyard (engine path)" "$bd" "$(printf %.1f "$(median "${rss_b[@]}")")"
  row "docker cp | zstd -3 -T0 > f" "$bp" "-"
  row "restore, dockyard (verify + stage + swap)" "$rd" "$(printf %.1f "$(median "${rss_r[@]}")")"
  row "zstd -dc f | docker cp -" "$rp" "-"
  printf 'ratio pipeline/dockyard: backup %.2f, restore %.2f\n' "$(echo "$bp / $bd" | bc -l)" "$(echo "$rp / $rd" | bc -l)"
done
