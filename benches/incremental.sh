#!/usr/bin/env bash
# Issue 25: incremental backups against their parent's file index (docs/index.md), on speed.sh's
# ~1 GiB media mix (300 incompressible ~3 MiB photos, 2000 ~40 KiB text documents, 20000 ~2 KiB
# thumbnails). Each run, into a fresh directory: a full backup (timed); six increments, each
# after ~1% of the files changed (3 new photos, 200 new thumbnails, 20 documents rewritten in
# place), the first timed; the restore of the chain of 7 (the latest) and of the full backup
# alone, alternating; then an incremental backup of the unchanged volume (timed). Every change
# is followed by an untimed 3 s pause, so no file is "racily clean" (changed within 2 s of the
# walk that read it) and read again by the next increment. The files a run added are removed
# before the next one. Prints medians, the ratios to the full backup (the chain's restore: to the
# full one's), the bytes each backup wrote (archive, index, deletion list), dockyard's peak RSS,
# and the targets.
# Usage: benches/incremental.sh [DOCKYARD_BIN] [runs]
#   (default target/x86_64-unknown-linux-gnu/release/dockyard, 5 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/x86_64-unknown-linux-gnu/release/dockyard}") runs=${2:-5}
source .ci/lib.sh
source benches/lib.sh
need_packages
bench_tools
command -v jq >/dev/null || apt-get install -y -qq jq >/dev/null
ensure_docker
work=$(mktemp -d)
name=dyb-incr-$$
image=dockyard-test/busybox:1
trap 'docker rm -f -v "$name" "$name-r" >/dev/null 2>&1; rm -rf "$work"; stop_started' EXIT
docker image inspect $image >/dev/null 2>&1 || cargo test -q --test backup_restore container_without_volumes >/dev/null


# Changes ~1% of the mix's 22300 files in container $1 (change number $2): 3 new photos, 200 new
# thumbnails, 20 documents rewritten in place (the same inodes, new contents); then waits 3 s.
change() {
  docker exec "$1" sh -c '
    set -e; cd /srv/media; t='"$2"'
    for j in 1 2 3; do head -c 3145728 /dev/urandom > photos/n$t-$j.jpg; done
    j=0; while [ $j -lt 200 ]; do head -c 2048 /dev/urandom > thumbs/n$t-$j.jpg; j=$((j + 1)); done
    awk "BEGIN { srand($t); for (f = 0; f < 20; f++) { p = sprintf(\"docs/d%04d.txt\", ($t * 20 + f) % 2000);
         for (i = 0; i < 760; i++) printf \"%d user%d PUT /media/%x 201 %d ms\\n\", i, int(rand()*1000), int(rand()*1e9), int(rand()*5000) > p;
         close(p) } }"'
  sleep 3
}


# Bytes a backup wrote (its --json document in file $1): archive, index and deletion list.
written() { jq -r '.backup.size + (.backup.index.size // 0) + (.backup.deleted.size // 0)' "$1"; }

# Says so (stderr) when the backup of --json document $1 was made full, and why.
increment() {
  [ "$(jq -r '.incremental.parent // empty' "$1")" ] ||
    echo "warning: an incremental backup was full: $(jq -r '.incremental.full_because' "$1")" >&2
}

inc=(--incremental --full-every 8 --no-progress --json)
docker run -d --name "$name" --network none -v /srv/media $image sleep 100000 >/dev/null
docker create --name "$name-r" --network none -v /srv/media $image sleep 100000 >/dev/null
fill_mix "$name"
total=$(media_mib "$name")
files=$(docker exec "$name" sh -c 'find /srv/media -type f | wc -l')
b_full=() b_same=() b_pct=() r_full=() r_chain=() w_full=() w_same=() w_pct=()
rss_full=() rss_same=() rss_pct=() rss_rfull=() rss_rchain=()
for i in $(seq 1 "$runs"); do
  docker exec "$name" sh -c 'rm -f /srv/media/photos/n* /srv/media/thumbs/n*'
  sleep 3
  d=$work/d
  rm -rf "$d"
  sync
  timed b_full peak_rss rss_full "$bin" backup "$name" --to "$d" --no-progress --json >"$work/full.json"
  full_id=$(jq -r .backup.id "$work/full.json")
  w_full+=("$(written "$work/full.json")")
  for k in 1 2 3 4 5 6; do
    change "$name" "$(((i - 1) * 6 + k))"
    sync
    if [ $k = 1 ]; then
      timed b_pct peak_rss rss_pct "$bin" backup "$name" --to "$d" "${inc[@]}" >"$work/inc.json"
      w_pct+=("$(written "$work/inc.json")")
    else
      "$bin" backup "$name" --to "$d" "${inc[@]}" >"$work/inc.json"
    fi
    increment "$work/inc.json"
  done
  order="chain full"
  [ $((i % 2)) = 0 ] && order="full chain"
  for how in $order; do
    pick=()
    [ "$how" = full ] && pick=(--backup "$full_id")
    sync
    timed "r_$how" peak_rss "rss_r$how" "$bin" restore "$name-r" --from "$d" --container "$name" \
      --no-safety-backup --no-progress "${pick[@]}" >/dev/null
    settle "$name-r"
  done
  sync
  timed b_same peak_rss rss_same "$bin" backup "$name" --to "$d" "${inc[@]}" >"$work/inc.json"
  w_same+=("$(written "$work/inc.json")")
  increment "$work/inc.json"
done

ratio() { printf %.3f "$(echo "$1 / $2" | bc -l)"; }
mib() { printf %.1f "$(median "$@")"; }
bytes() { printf %.0f "$(median "$@")"; }
bf=$(median "${b_full[@]}") rf=$(median "${r_full[@]}")
printf '\nmedia mix: %s MiB in %s files; %s runs each\n' "$total" "$files" "$runs"
printf '%-34s %9s %7s %14s %8s   %s\n' "row" "median s" "ratio" "bytes written" "RSS MiB" "target"
row() { printf '%-34s %9.2f %7s %14s %8s   %s\n' "$@"; }
row "backup, full" "$bf" "1.000" "$(bytes "${w_full[@]}")" "$(mib "${rss_full[@]}")" "-"
row "backup --incremental, unchanged" "$(median "${b_same[@]}")" "$(ratio "$(median "${b_same[@]}")" "$bf")" \
  "$(bytes "${w_same[@]}")" "$(mib "${rss_same[@]}")" "ratio <= 0.10, bytes < 1048576, RSS <= 64"
row "backup --incremental, 1% changed" "$(median "${b_pct[@]}")" "$(ratio "$(median "${b_pct[@]}")" "$bf")" \
  "$(bytes "${w_pct[@]}")" "$(mib "${rss_pct[@]}")" "ratio <= 0.15, RSS <= 64"
row "restore, the full backup alone" "$rf" "1.000" "-" "$(mib "${rss_rfull[@]}")" "-"
row "restore, chain of 7 (latest)" "$(median "${r_chain[@]}")" "$(ratio "$(median "${r_chain[@]}")" "$rf")" \
  "-" "$(mib "${rss_rchain[@]}")" "ratio <= 1.30, RSS <= 64"
echo
echo "runs: backup full ${b_full[*]} | unchanged ${b_same[*]} | 1% ${b_pct[*]}"
echo "runs: restore full ${r_full[*]} | chain ${r_chain[*]}"
echo "runs: bytes unchanged ${w_same[*]} | 1% ${w_pct[*]}"
