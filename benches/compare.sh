#!/usr/bin/env bash
# Before/after: two dockyard binaries and the `docker cp | zstd -3 -T0` pipeline, alternating on
# the same ~1 GiB media-like volume in one run, backup and restore. Prints medians, ratios and
# peak RSS. Usage: benches/compare.sh OLD_BIN NEW_BIN [runs]   (default 5 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(realpath "$1") new=$(realpath "$2") runs=${3:-5}
source .ci/lib.sh
source benches/lib.sh
need_packages
bench_tools
ensure_docker
work=$(mktemp -d)
name=dyb-compare-$$
media_pair "$name"
echo "volume: ${total} MiB; ${runs} runs each, alternating old / new / pipeline"

b_old=() b_new=() b_pipe=() r_old=() r_new=() r_pipe=() rss_old=() rss_new=()
# Each restore writes ~1 GiB: `sync` first, so none is timed with the previous one's writeback,
# and the binaries take turns going first.
for i in $(seq 1 "$runs"); do
  order="old new"
  [ $((i % 2)) = 0 ] && order="new old"
  for who in $order; do
    bin=${!who}
    rm -rf "$work/$who"
    sync
    timed "b_$who" peak_rss "rss_$who" "$bin" backup "$name" --to "$work/$who" --no-progress >/dev/null
    sync
    timed "r_$who" "$bin" restore "$name-r" --from "$work/$who" --container "$name" --no-safety-backup --no-progress >/dev/null
  done
  rm -f "$work/out.tar.zst"
  sync
  timed b_pipe sh -c "docker cp '$name:/srv/media' - | zstd -3 -T0 -q > '$work/out.tar.zst'"
  sync
  timed r_pipe sh -c "zstd -dc '$work/out.tar.zst' | docker cp - '$name-r:/srv/'"
done
row() { printf '%-34s %10.2f %10.1f %14s\n' "$1" "$2" "$(echo "$total / $2" | bc -l)" "$3"; }
printf '\n%-34s %10s %10s %14s\n' "command" "median s" "MiB/s" "peak RSS MiB"
row "backup, old dockyard" "$(median "${b_old[@]}")" "$(printf %.1f "$(median "${rss_old[@]}")")"
row "backup, new dockyard" "$(median "${b_new[@]}")" "$(printf %.1f "$(median "${rss_new[@]}")")"
row "docker cp | zstd -3 -T0 > f" "$(median "${b_pipe[@]}")" "-"
row "restore, old dockyard" "$(median "${r_old[@]}")" "-"
row "restore, new dockyard" "$(median "${r_new[@]}")" "-"
row "zstd -dc f | docker cp -" "$(median "${r_pipe[@]}")" "-"
ratio() { printf '%.2f' "$(echo "$(median "${!1}") / $(median "${!2}")" | bc -l)"; }
echo
echo "backup  new/old time: $(ratio 'b_new[@]' 'b_old[@]')   pipeline/new: $(ratio 'b_pipe[@]' 'b_new[@]')   (<= 1.0 new not slower; >= 1.0 as fast as the pipeline)"
echo "restore new/old time: $(ratio 'r_new[@]' 'r_old[@]')   pipeline/new: $(ratio 'r_pipe[@]' 'r_new[@]')"
echo "runs: backup old ${b_old[*]} | new ${b_new[*]} | pipe ${b_pipe[*]}"
echo "runs: restore old ${r_old[*]} | new ${r_new[*]} | pipe ${r_pipe[*]}"
