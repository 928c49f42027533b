# Shared by the bench scripts: a media-like volume, timing and medians. Sourced, not run.

# Fills /srv/media of running container $1 with $2 sets (default 1) of ~1 GiB each: 7 x 100 MiB
# random "video", 2000 x ~100 KiB text reports, 30000 x 4 KiB small files.
fill_media() {
  local name=$1 sets=${2:-1}
  echo "filling /srv/media with $sets x (7 x 100 MiB random, 2000 x ~100 KiB text, 30000 x 4 KiB small files)..."
  docker exec "$name" sh -c '
    set -e
    for s in $(seq 1 '"$sets"'); do
      d=/srv/media/set$s; mkdir -p $d/video $d/docs $d/thumbs; cd $d
      for i in 1 2 3 4 5 6 7; do head -c 104857600 /dev/urandom > video/clip$i.mp4; done
      awk "BEGIN { srand($s); for (f = 0; f < 2000; f++) { p = sprintf(\"docs/report-%04d.txt\", f);
           for (i = 0; i < 1900; i++) printf \"%d user%d GET /media/%x 200 %d ms\\n\", i, int(rand()*1000), int(rand()*1e9), int(rand()*5000) > p;
           close(p) } }"
      awk "BEGIN { srand(100 + $s); for (f = 0; f < 30000; f++) { p = sprintf(\"thumbs/t%05d.bin\", f);
           for (i = 0; i < 64; i++) printf \"%08x%08x%08x%08x%08x%08x%08x%08x\", rand()*4e9, rand()*4e9, rand()*4e9, rand()*4e9, rand()*4e9, rand()*4e9, rand()*4e9, rand()*4e9 > p;
           close(p) } }"
    done'
}

# The source and target of a backup/restore bench: container $1 running with ~1 GiB of media
# (fill_media) and $1-r created with an empty /srv/media, both from the busybox test image (built
# by a test if missing); removed, with $work, on exit. Sets `total` (MiB).
media_pair() {
  local image=dockyard-test/busybox:1
  trap 'docker rm -f -v "'"$1"'" "'"$1"'-r" >/dev/null 2>&1; rm -rf "$work"; stop_started' EXIT
  docker image inspect $image >/dev/null 2>&1 || cargo test -q --test backup_restore container_without_volumes >/dev/null
  docker run -d --name "$1" --network none -v /srv/media $image sleep 100000 >/dev/null
  docker create --name "$1-r" --network none -v /srv/media $image sleep 100000 >/dev/null
  fill_media "$1" 1
  total=$(media_mib "$1")
}

# MiB used by /srv/media of container $1.
media_mib() { docker exec "$1" du -sm /srv/media | cut -f1; }

now() { date +%s.%N; }

# Runs a command, appending its wall seconds to the array named $1.
timed() {
  local -n into=$1
  shift
  local t0 t1
  t0=$(now)
  "$@"
  t1=$(now)
  into+=("$(echo "$t1 - $t0" | bc)")
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Peak RSS in MiB of a command (GNU time), appended to the array named $1.
peak_rss() {
  local -n into=$1
  shift
  local f
  f=$(mktemp)
  /usr/bin/time -f %M -o "$f" "$@"
  into+=("$(echo "$(cat "$f") / 1024" | bc -l)")
  rm -f "$f"
}

bench_tools() {
  for p in time:/usr/bin/time bc:bc; do
    command -v "${p#*:}" >/dev/null || apt-get install -y -qq "${p%%:*}" >/dev/null
  done
}

# What the benches against the test peers need: packages, the engine, sshd, Garage, awscli.
bench_peers() {
  need_packages
  bench_tools
  ensure_docker
  ensure_peers
  command -v aws >/dev/null || pip install -q awscli
}

# The ~1 GiB media mix of speed.sh and incremental.sh, into /srv/media of running container $1:
# 300 incompressible ~3 MiB photos, 2000 ~40 KiB text documents, 20000 ~2 KiB thumbnails.
fill_mix() {
  docker exec "$1" sh -c '
    set -e; cd /srv/media; mkdir -p photos docs thumbs
    for i in $(seq 1 300); do head -c 3145728 /dev/urandom > photos/p$i.jpg; done
    awk "BEGIN { srand(7); for (f = 0; f < 2000; f++) { p = sprintf(\"docs/d%04d.txt\", f);
         for (i = 0; i < 760; i++) printf \"%d user%d GET /media/%x 200 %d ms\\n\", i, int(rand()*1000), int(rand()*1e9), int(rand()*5000) > p;
         close(p) } }"
    i=0; while [ $i -lt 20000 ]; do head -c 2048 /dev/urandom > thumbs/t$i.jpg; i=$((i + 1)); done'
}

# Waits (untimed) until no helper of container $1 runs: a restore returns once its swap is done and
# leaves the old contents to a clean-up helper, whose deletion would otherwise slow the next run.
settle() {
  local ids
  ids=$(docker ps -q --filter "label=dockyard.for=$1")
  # shellcheck disable=SC2086 # one id a word
  if [ -n "$ids" ]; then docker wait $ids >/dev/null 2>&1 || true; fi
  sync
}
