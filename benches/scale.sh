#!/usr/bin/env bash
# Benchmark (issue 13): dockyard at scale, one table per part from one run.
#   catalog: a destination holding 10,000 backups of 20 containers (manifests and tiny archives
#            generated directly, 500 per container, one every 4 hours), on a local directory, over
#            SSH and on Garage: `list --container`, `restore --dry-run` of latest and
#            `prune --dry-run --container`, wall time and peak RSS (GNU time).
#   files:   volumes of 100,000 and 1,000,000 small files: backup, verify, `restore --dry-run`
#            (into an empty container) and restore, wall time and peak RSS side by side.
#   parts:   the S3 part sizes the growth rule uses from the default 16 MiB and from 5 MiB, up to
#            S3's 5 TiB object limit.
#   big:     (not in "all": Garage needs about 52 GiB free on this disk) a 50 GiB incompressible
#            backup to Garage from S3's smallest part size, 5 MiB, which 10,000 fixed parts could
#            not hold (48.8 GiB), then verified from Garage.
#   sag:     (not in "all": needs 21 GiB free) a 20 GiB backup to a local directory; the archive's
#            growth rate in each tenth of it (its temp file's size sampled every 0.2 s).
#   spool:   (not in "all") an 8 GiB backup to Garage with 32, 64 and 128 MiB parts: the first
#            held in memory, the others spooled to TMPDIR; peak RSS of each.
#   The big, sag and spool sources cost no disk: 1 GiB files on a loop-mounted XFS whose extents are
#   reflinks of one 64 MiB random block (repeats 64 MiB apart, far outside zstd's window, so the
#   archive is as large as the data), bind-mounted into the app.
# Usage: benches/scale.sh [catalog|files|parts|big|sag|spool|all]   (default all: the first three; runs
# once each: the sizes, not noise, are the point here). SCALE_FILES="100000" limits the file
# counts; SCALE_BIG_GIB and SCALE_SAG_GIB (50, 20) the big sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
source .ci/lib.sh
source .ci/peers.sh
source benches/lib.sh
bench_peers
work=$(mktemp -d)
apps=()
xfs=""
cleanup() {
  for a in "${apps[@]}"; do docker rm -f -v "$a" >/dev/null 2>&1 || true; done
  if [ -n "$xfs" ]; then umount "$xfs" || true; fi
  rm -rf "$work"
  ssh -F "$DOCKYARD_TEST_SSH_CONFIG" dockyard-test "rm -rf bench-scale-$$" || true
  aws s3 rm --quiet --recursive --endpoint-url "$DOCKYARD_TEST_S3_ENDPOINT" "s3://$DOCKYARD_TEST_S3_BUCKET/bench-scale-$$" >/dev/null 2>&1 || true
  stop_started
}
trap cleanup EXIT

cargo build --release --locked -q
bin=$PWD/target/x86_64-unknown-linux-gnu/release/dockyard
image=dockyard-test/busybox:1
docker image inspect $image >/dev/null 2>&1 || cargo test -q --test backup_restore container_without_volumes >/dev/null
export AWS_ACCESS_KEY_ID=$DOCKYARD_TEST_S3_KEY_ID AWS_SECRET_ACCESS_KEY=$DOCKYARD_TEST_S3_SECRET
export AWS_REGION=garage AWS_DEFAULT_REGION=garage AWS_EC2_METADATA_DISABLED=true DOCKYARD_SSH_CONFIG=$DOCKYARD_TEST_SSH_CONFIG
export DOCKYARD_S3_ENDPOINT=$DOCKYARD_TEST_S3_ENDPOINT

# Runs "$@" once; prints "seconds peak-MiB" (exits on failure).
measure() {
  local f t0 t1
  f=$(mktemp)
  t0=$(now)
  /usr/bin/time -f %M -o "$f" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  t1=$(now)
  printf '%.2f %.1f' "$(echo "$t1 - $t0" | bc)" "$(echo "$(tail -1 "$f") / 1024" | bc -l)"
  rm -f "$f"
}

row() { printf '%-34s %-10s %10s %12s\n' "$@"; }

catalog() {
  local dir=$work/catalog
  echo "generating 10,000 backups of 20 containers..."
  python3 - "$dir" <<'EOF'
import datetime, hashlib, io, json, os, subprocess, sys, tarfile
out = sys.argv[1]
os.makedirs(out)
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
    d = tarfile.TarInfo("srv/media"); d.type = tarfile.DIRTYPE; d.mode = 0o755; t.addfile(d)
    f = tarfile.TarInfo("srv/media/hello.txt"); f.size = 6; t.addfile(f, io.BytesIO(b"hello\n"))
tar = buf.getvalue()
zst = subprocess.run(["zstd", "-3", "-q", "-c"], input=tar, capture_output=True, check=True).stdout
sha = hashlib.sha256(zst).hexdigest()
start = datetime.datetime(2021, 12, 1, tzinfo=datetime.timezone.utc)
for c in range(20):
    name = f"app{c:02d}"
    for i in range(500):
        t = start + datetime.timedelta(hours=4 * i, minutes=c)
        bid = f"{name}-{t:%Y%m%dT%H%M%SZ}-{i:04x}"
        m = {"id": bid, "container": name, "container_id": "0" * 64, "image": "busybox",
             "image_id": "sha256:" + "0" * 64, "host": "bench",
             "paths": [{"path": "/srv/media", "mount": {"destination": "/srv/media", "type": "volume"}}],
             "created": t.isoformat().replace("+00:00", "Z"), "tags": [], "tool_version": "0.1.0",
             "size": len(zst), "sha256": sha, "tar_bytes": len(tar), "entries": 2, "level": 3,
             "archive": bid + ".tar.zst"}
        with open(os.path.join(out, bid + ".json"), "w") as fh:
            json.dump(m, fh)
        with open(os.path.join(out, bid + ".tar.zst"), "wb") as fh:
            fh.write(zst)
EOF
  echo "copying them over SSH and to Garage..."
  tar -C "$dir" -c . | ssh -F "$DOCKYARD_TEST_SSH_CONFIG" dockyard-test "mkdir -p bench-scale-$$ && tar -C bench-scale-$$ -x"
  aws s3 cp --quiet --recursive --endpoint-url "$DOCKYARD_TEST_S3_ENDPOINT" "$dir" "s3://$DOCKYARD_TEST_S3_BUCKET/bench-scale-$$/catalog"
  local target=dyb-scale-target-$$
  apps+=("$target")
  docker create --name "$target" --network none -v /srv/media $image sleep 100000 >/dev/null
  echo
  echo "catalog: 10,000 backups of 20 containers (500 each); container app07"
  row "command" "dest" "seconds" "peak MiB"
  local d r
  for d in "$dir" "ssh://dockyard-test/~/bench-scale-$$" "s3://$DOCKYARD_TEST_S3_BUCKET/bench-scale-$$/catalog"; do
    local label=${d%%:*}; [ "$label" = "$d" ] && label=local
    r=$(measure "$bin" list --to "$d" --container app07); row "list --container app07" "$label" $r
    r=$(measure "$bin" restore "$target" --from "$d" --container app07 --dry-run); row "restore --dry-run (latest)" "$label" $r
    r=$(measure "$bin" prune --to "$d" --container app07 --keep-daily 30 --dry-run); row "prune --dry-run --container" "$label" $r
    r=$(measure "$bin" list --to "$d"); row "list (all 10,000)" "$label" $r
  done
}

files() {
  local n
  echo
  echo "files: volumes of small files (4 KiB text each, 1000 per directory)"
  row "step" "files" "seconds" "peak MiB"
  for n in ${SCALE_FILES:-100000 1000000}; do
    local app=dyb-scale-$n-$$ fresh=dyb-scale-$n-new-$$ dest=$work/files-$n
    apps+=("$app" "$fresh")
    docker run -d --name "$app" --network none -v /srv/media $image sleep 100000 >/dev/null
    docker create --name "$fresh" --network none -v /srv/media $image sleep 100000 >/dev/null
    echo "creating $n files..." >&2
    docker exec "$app" sh -c "cd /srv/media && awk 'BEGIN { for (d = 0; d < $n / 1000; d++) { dir = sprintf(\"d%04d\", d); system(\"mkdir \" dir); for (f = 0; f < 1000; f++) { p = sprintf(\"%s/f%04d.txt\", dir, f); for (i = 0; i < 64; i++) printf \"%08d line of a small text document %024d\\n\", i, d * 1000 + f > p; close(p) } } }'"
    local r id
    r=$(measure "$bin" backup "$app" --to "$dest"); row "backup" "$n" $r
    id=$("$bin" list --to "$dest" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][0]["id"])')
    r=$(measure "$bin" verify "$id" --to "$dest"); row "verify" "$n" $r
    r=$(measure "$bin" restore "$fresh" --from "$dest" --container "$app" --dry-run); row "restore --dry-run (empty target)" "$n" $r
    r=$(measure "$bin" restore "$fresh" --from "$dest" --container "$app"); row "restore (empty target)" "$n" $r
    docker rm -f -v "$app" "$fresh" >/dev/null
    rm -rf "$dest"
  done
}

parts() {
  echo
  echo "parts: the S3 part-size growth rule (src/destination/parts.rs), 10,000 parts at most"
  cargo test -q --lib parts::tests::print_the_table -- --nocapture --ignored 2>/dev/null | grep -E '^\|'
}

# Prints the archive's MiB/s in each tenth of its bytes, from samples "seconds bytes" (linear
# between samples; the clock starts at the last sample before the first byte).
rates() {
  awk '{ t[NR] = $1; b[NR] = $2; if ($2 > total) total = $2 } END {
    for (i = 1; b[i] == 0; i++); prev = t[i > 1 ? i - 1 : 1]
    for (d = 1; d <= 10; d++) {
      want = total * d / 10
      for (; b[i] < want; i++);
      at = (d == 10) ? t[i] : t[i - 1] + (t[i] - t[i - 1]) * (want - b[i - 1]) / (b[i] - b[i - 1])
      printf "%.0f ", total / 10 / 1048576 / (at - prev); prev = at
    }
    print "" }' "$1"
}

# Makes $1 GiB of incompressible 1 GiB files under $xfs/media that cost no disk: a loop-mounted
# XFS whose files are reflinks of one 64 MiB random block.
reflinked_source() {
  local gib=$1 i
  command -v mkfs.xfs >/dev/null || apt-get install -y -qq xfsprogs >/dev/null
  echo "making $gib GiB of reflinked incompressible files on a loop-mounted XFS..." >&2
  xfs=$work/xfs
  mkdir -p "$xfs"
  truncate -s $((gib + 8))G "$work/xfs.img"
  mkfs.xfs -q -m reflink=1 "$work/xfs.img"
  mount -o loop "$work/xfs.img" "$xfs"
  mkdir -p "$xfs/media"
  head -c 64M /dev/urandom >"$xfs/seed"
  for i in $(seq 0 15); do xfs_io -f -c "reflink $xfs/seed 0 $((i * 64))m 64m" "$xfs/clip" >/dev/null; done
  for i in $(seq 1 "$gib"); do cp --reflink=always "$xfs/clip" "$xfs/media/clip$i.mp4"; done
}

big() {
  local gib=${SCALE_BIG_GIB:-50}
  reflinked_source "$gib"
  local app=dyb-scale-big-$$ s3=s3://$DOCKYARD_TEST_S3_BUCKET/bench-scale-$$/big
  apps+=("$app")
  docker run -d --name "$app" --network none --mount "type=bind,source=$xfs/media,target=/srv/media" $image sleep 100000 >/dev/null
  echo
  echo "big: $gib GiB to Garage from 5 MiB parts (fixed 5 MiB parts: $((gib * 1024 / 5)) needed)"
  row "step" "GiB" "seconds" "peak MiB"
  local r id key head=(aws s3api head-object --endpoint-url "$DOCKYARD_TEST_S3_ENDPOINT" --bucket "$DOCKYARD_TEST_S3_BUCKET")
  r=$(measure "$bin" backup "$app" --to "$s3" --s3-part-size 5); row "backup to Garage" "$gib" $r
  id=$("$bin" list --to "$s3" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][0]["id"])')
  key=bench-scale-$$/big/$id.tar.zst
  echo "archive: $("${head[@]}" --key "$key" --query ContentLength --output text) bytes in $("${head[@]}" --key "$key" --part-number 1 --query PartsCount --output text) parts"
  r=$(measure "$bin" verify "$id" --to "$s3"); row "verify from Garage" "$gib" $r
  aws s3 rm --quiet --recursive --endpoint-url "$DOCKYARD_TEST_S3_ENDPOINT" "s3://$DOCKYARD_TEST_S3_BUCKET/bench-scale-$$" >/dev/null
}

spool() {
  local gib=${SCALE_SPOOL_GIB:-8}
  reflinked_source "$gib"
  local app=dyb-scale-spool-$$ mib r
  apps+=("$app")
  docker run -d --name "$app" --network none --mount "type=bind,source=$xfs/media,target=/srv/media" $image sleep 100000 >/dev/null
  echo
  echo "spool: $gib GiB to Garage, parts held in memory (up to 32 MiB) or spooled to TMPDIR (larger)"
  row "part size" "GiB" "seconds" "peak MiB"
  for mib in 32 64 128; do
    r=$(measure "$bin" backup "$app" --to "s3://$DOCKYARD_TEST_S3_BUCKET/bench-scale-$$/spool-$mib" --s3-part-size $mib)
    row "$mib MiB" "$gib" $r
    aws s3 rm --quiet --recursive --endpoint-url "$DOCKYARD_TEST_S3_ENDPOINT" "s3://$DOCKYARD_TEST_S3_BUCKET/bench-scale-$$/spool-$mib" >/dev/null
  done
}

# Samples every 0.2 s, into file $1, the size of the first file matching glob $2 while process $3
# runs.
sample_growth() {
  local out=$1 glob=$2 pid=$3 t0 size
  t0=$(now)
  : >"$out"
  while kill -0 "$pid" 2>/dev/null; do
    size=$(stat -c %s $glob 2>/dev/null | head -1 || true)
    echo "$(echo "$(now) - $t0" | bc) ${size:-0}" >>"$out"
    sleep 0.2
  done
}

sag() {
  local gib=${SCALE_SAG_GIB:-20}
  reflinked_source "$gib"
  local app=dyb-scale-sag-$$ dest=$work/sag pid r p
  apps+=("$app")
  docker run -d --name "$app" --network none --mount "type=bind,source=$xfs/media,target=/srv/media" $image sleep 100000 >/dev/null
  echo
  echo "sag: a $gib GiB backup to a local directory, archive MiB/s in each tenth of its bytes"
  mkdir -p "$dest"
  "$bin" backup "$app" --to "$dest" >/dev/null 2>"$work/err" &
  pid=$!
  sample_growth "$work/samples" "$dest/.*.tar.zst.*.partial" "$pid"
  wait "$pid" || { cat "$work/err" >&2; exit 1; }
  rm -rf "$dest"
  sync
  # The same machine's baseline, in the same run: the pipeline writing the same bytes.
  sh -c "docker cp '$app:/srv/media' - | zstd -3 -T0 -q > '$work/pipe.tar.zst'" &
  pid=$!
  sample_growth "$work/pipe-samples" "$work/pipe.tar.zst" "$pid"
  wait "$pid"
  rm -f "$work/pipe.tar.zst"
  r=($(rates "$work/samples"))
  p=($(rates "$work/pipe-samples"))
  printf '%-30s %s\n' "dockyard backup" "${r[*]}" "docker cp | zstd -3 -T0 > f" "${p[*]}"
  for x in r p; do
    local -n v=$x
    printf '%-30s first 10%%: %s MiB/s, last 10%%: %s MiB/s, change %+.1f%%\n' "$([ $x = r ] && echo dockyard || echo pipeline)" "${v[0]}" "${v[9]}" "$(echo "100 * (${v[9]} - ${v[0]}) / ${v[0]}" | bc -l)"
  done
}

case $what in
  big) big ;;
  spool) spool ;;
  sag) sag ;;
  catalog) catalog ;;
  files) files ;;
  parts) parts ;;
  all) parts; catalog; files ;;
esac
