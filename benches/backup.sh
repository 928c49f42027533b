#!/usr/bin/env bash
# Benchmark: dockyard backup vs `docker cp <c>:/srv/media - | zstd -3 -T0 > out` on ~1 GiB of
# media-like data, in one run. Prints medians, their ratio, and dockyard's peak RSS at two volume
# sizes. Usage: benches/backup.sh [runs]   (default 5; needs a Docker engine: .ci/run starts one)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
source .ci/lib.sh
need_packages
for p in time:/usr/bin/time bc:bc; do command -v "${p#*:}" >/dev/null || apt-get install -y -qq "${p%%:*}" >/dev/null; done
ensure_docker
trap 'docker rm -f -v "$name" >/dev/null 2>&1; rm -rf "$work"; stop_started' EXIT

cargo build --release --locked -q
bin=$PWD/target/release/dockyard
work=$(mktemp -d)
name=dyb-bench-$$
image=dockyard-test/busybox:1
docker image inspect $image >/dev/null 2>&1 || cargo test -q --test backup_restore container_without_volumes >/dev/null  # its App builds the test image

docker run -d --name "$name" --network none -v /srv/media $image sleep 100000 >/dev/null
echo "filling /srv/media: 7 x 100 MiB random, 2000 x ~100 KiB text, 30000 x 4 KiB small files..."
docker exec "$name" sh -c '
  set -e; cd /srv/media; mkdir -p video docs thumbs
  for i in 1 2 3 4 5 6 7; do head -c 104857600 /dev/urandom > video/clip$i.mp4; done
  awk "BEGIN { srand(1); for (f = 0; f < 2000; f++) { p = sprintf(\"docs/report-%04d.txt\", f);
       for (i = 0; i < 1900; i++) printf \"%d user%d GET /media/%x 200 %d ms\\n\", i, int(rand()*1000), int(rand()*1e9), int(rand()*5000) > p;
       close(p) } }"
  awk "BEGIN { srand(2); for (f = 0; f < 30000; f++) { p = sprintf(\"thumbs/t%05d.bin\", f);
       for (i = 0; i < 64; i++) printf \"%08x%08x%08x%08x%08x%08x%08x%08x\", rand()*4e9, rand()*4e9, rand()*4e9, rand()*4e9, rand()*4e9, rand()*4e9, rand()*4e9, rand()*4e9 > p;
       close(p) } }"
'
total=$(docker exec "$name" du -sm /srv/media | cut -f1)
files=$(docker exec "$name" sh -c 'find /srv/media -type f | wc -l')
echo "volume: ${total} MiB in ${files} files; ${runs} runs each, alternating"

now() { date +%s.%N; }
dy=(); pipe=(); rss=(); rss_small=()
for i in $(seq 1 "$runs"); do
  rm -rf "$work/d" "$work/out.tar.zst"
  t0=$(now)
  /usr/bin/time -f %M -o "$work/rss" "$bin" backup "$name" --to "$work/d" --no-progress >/dev/null
  t1=$(now)
  dy+=("$(echo "$t1 - $t0" | bc)"); rss+=("$(cat "$work/rss")")
  t0=$(now)
  docker cp "$name:/srv/media" - | zstd -3 -T0 -q > "$work/out.tar.zst"
  t1=$(now)
  pipe+=("$(echo "$t1 - $t0" | bc)")
  dsize=$(stat -c %s "$work"/d/*.tar.zst); psize=$(stat -c %s "$work/out.tar.zst")
done
for i in $(seq 1 "$runs"); do
  rm -rf "$work/d"
  /usr/bin/time -f %M -o "$work/rss" "$bin" backup "$name" --path /srv/media/docs --to "$work/d" --no-progress >/dev/null
  rss_small+=("$(cat "$work/rss")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
md=$(median "${dy[@]}"); mp=$(median "${pipe[@]}")
small=$(docker exec "$name" du -sm /srv/media/docs | cut -f1)
printf '\n%-44s %10s %10s %12s %14s\n' "command" "median s" "MiB/s" "output MiB" "peak RSS MiB"
printf '%-44s %10.2f %10.1f %12.1f %14.1f\n' "dockyard backup (level 3, all cores)" "$md" "$(echo "$total / $md" | bc -l)" "$(echo "$dsize/1048576" | bc -l)" "$(echo "$(median "${rss[@]}")/1024" | bc -l)"
printf '%-44s %10.2f %10.1f %12.1f %14s\n' "docker cp | zstd -3 -T0 > out" "$mp" "$(echo "$total / $mp" | bc -l)" "$(echo "$psize/1048576" | bc -l)" "-"
printf '%-44s %10s %10s %12s %14.1f\n' "dockyard backup --path /srv/media/docs (${small} MiB)" "" "" "" "$(echo "$(median "${rss_small[@]}")/1024" | bc -l)"
printf '\nratio (pipeline median / dockyard median): %.2f  (>= 1.0 means dockyard is at least as fast)\n' "$(echo "$mp / $md" | bc -l)"
echo "runs: dockyard ${dy[*]} | pipeline ${pipe[*]}"
