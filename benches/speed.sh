#!/usr/bin/env bash
# Issue 12: backup and restore through dockyard's agent (the default) and through the engine's
# archive endpoint (--agent never), beside the pipelines they should beat, on two volumes: a
# ~1 GiB media mix (300 incompressible ~3 MiB photos, 2000 ~40 KiB text documents, 20000 ~2 KiB
# thumbnails) and 30000 small 4 KiB text files; then a 10 GiB sparse disk image. Alternating
# runs; prints medians, ratios (pipeline / dockyard: above 1 means dockyard is faster) and
# dockyard's peak RSS. Restores check the whole archive while they stage it, and are timed until
# they report (the swap done); the old contents' deletion that follows in the background is
# waited for, untimed, before the next command.
# Usage: benches/speed.sh [DOCKYARD_BIN] [runs]
#   (default target/x86_64-unknown-linux-gnu/release/dockyard, 5 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/x86_64-unknown-linux-gnu/release/dockyard}") runs=${2:-5}
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
  b_ag=() b_en=() b_pipe=() r_ag=() r_en=() r_pipe=() rss_ba=() rss_be=() rss_ra=() rss_re=()
  for i in $(seq 1 "$runs"); do
    rm -rf "$work/ag" "$work/en" "$work/out.tar.zst"
    sync
    timed b_ag peak_rss rss_ba "$bin" backup "$name" --to "$work/ag" --no-progress >/dev/null
    sync
    timed b_en peak_rss rss_be "$bin" backup "$name" --to "$work/en" --no-progress --agent never >/dev/null
    sync
    timed b_pipe sh -c "docker cp '$name:/srv/media' - | zstd -3 -T0 -q > '$work/out.tar.zst'"
    sync
    timed r_ag peak_rss rss_ra "$bin" restore "$name-r" --from "$work/ag" --container "$name" --no-safety-backup --no-progress >/dev/null
    settle "$name-r"
    timed r_en peak_rss rss_re "$bin" restore "$name-r" --from "$work/ag" --container "$name" --no-safety-backup --no-progress --agent never >/dev/null
    settle "$name-r"
    timed r_pipe sh -c "zstd -dc '$work/out.tar.zst' | docker cp - '$name-r:/srv/'"
  done
  bp=$(median "${b_pipe[@]}") rp=$(median "${r_pipe[@]}")
  printf '\n%s: %s MiB in %s files, %s runs each, alternating\n' "$workload" "$total" "$files" "$runs"
  printf '%-46s %9s %9s %8s %12s\n' "command" "median s" "MiB/s" "ratio" "peak RSS MiB"
  row() { printf '%-46s %9.2f %9.1f %8s %12s\n' "$1" "$2" "$(echo "$total / $2" | bc -l)" "$3" "$4"; }
  ratio() { printf %.2f "$(echo "$1 / $2" | bc -l)"; }
  rss() { printf %.1f "$(median "$@")"; }
  row "backup, dockyard agent (default)" "$(median "${b_ag[@]}")" "$(ratio "$bp" "$(median "${b_ag[@]}")")" "$(rss "${rss_ba[@]}")"
  row "backup, dockyard --agent never (engine)" "$(median "${b_en[@]}")" "$(ratio "$bp" "$(median "${b_en[@]}")")" "$(rss "${rss_be[@]}")"
  row "docker cp | zstd -3 -T0 > f" "$bp" "1.00" "-"
  row "restore, dockyard agent (verify + stage + swap)" "$(median "${r_ag[@]}")" "$(ratio "$rp" "$(median "${r_ag[@]}")")" "$(rss "${rss_ra[@]}")"
  row "restore, dockyard --agent never (engine)" "$(median "${r_en[@]}")" "$(ratio "$rp" "$(median "${r_en[@]}")")" "$(rss "${rss_re[@]}")"
  row "zstd -dc f | docker cp -" "$rp" "1.00" "-"
done

# A 10 GiB sparse disk image with 8 MiB of data: backed up through the agent (holes are not read)
# and restored sparse (runs of zeros become holes again).
docker rm -f -v "$name" "$name-r" >/dev/null 2>&1 || true
docker run -d --name "$name" --network none -v /srv/media $image sleep 100000 >/dev/null
docker create --name "$name-r" --network none -v /srv/media $image sleep 100000 >/dev/null
docker exec "$name" sh -c 'truncate -s 10G /srv/media/disk.img && head -c 8388608 /dev/urandom | dd of=/srv/media/disk.img bs=1M seek=4096 conv=notrunc 2>/dev/null'
rm -rf "$work/sp"
t0=$(now); "$bin" backup "$name" --to "$work/sp" --no-progress >/dev/null; t1=$(now)
"$bin" restore "$name-r" --from "$work/sp" --container "$name" --no-safety-backup --no-progress >/dev/null; t2=$(now)
docker start "$name-r" >/dev/null
alloc=$(docker exec "$name-r" sh -c 'echo $(( $(stat -c %b /srv/media/disk.img) * 512 / 1048576 ))')
size=$(docker exec "$name-r" stat -c %s /srv/media/disk.img)
printf '\nsparse: 10 GiB image, 8 MiB data: backup %.2f s, archive %s, restore %.2f s, restored %s bytes with %s MiB allocated\n' \
  "$(echo "$t1 - $t0" | bc)" "$(du -h "$work"/sp/*.tar.zst | cut -f1)" "$(echo "$t2 - $t1" | bc)" "$size" "$alloc"
