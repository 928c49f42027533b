#!/usr/bin/env bash
# Benchmark: dockyard backup to SSH and to S3 (Garage) beside the shell pipelines that do the same,
# in one run, on the loopback test peers `.ci/peers.sh` starts:
#   ssh: docker cp <c>:/srv/media - | zstd -3 -T0 | ssh host 'cat > f'
#   s3:  docker cp <c>:/srv/media - | zstd -3 -T0 > f && aws s3 cp f s3://bucket/f   (awscli, PyPI)
# Prints median wall times and ratios at ~1 GiB, and dockyard's peak RSS at ~1 GiB and ~4 GiB.
# Usage: benches/remote.sh [runs]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
source .ci/lib.sh
source .ci/peers.sh
source benches/lib.sh
bench_peers
trap 'docker rm -f -v "$name" >/dev/null 2>&1; rm -rf "$work"; ssh -F "$DOCKYARD_TEST_SSH_CONFIG" dockyard-test "rm -rf bench-$$" || true; stop_started' EXIT

cargo build --release --locked -q
bin=$PWD/target/x86_64-unknown-linux-gnu/release/dockyard
work=$(mktemp -d)
name=dyb-remote-$$
image=dockyard-test/busybox:1
docker image inspect $image >/dev/null 2>&1 || cargo test -q --test backup_restore container_without_volumes >/dev/null

export AWS_ACCESS_KEY_ID=$DOCKYARD_TEST_S3_KEY_ID AWS_SECRET_ACCESS_KEY=$DOCKYARD_TEST_S3_SECRET
export AWS_REGION=garage AWS_EC2_METADATA_DISABLED=true DOCKYARD_SSH_CONFIG=$DOCKYARD_TEST_SSH_CONFIG
export DOCKYARD_S3_ENDPOINT=$DOCKYARD_TEST_S3_ENDPOINT
s3url=s3://$DOCKYARD_TEST_S3_BUCKET/bench-$$
sshurl=ssh://dockyard-test/~/bench-$$
ssh_pipe() { docker cp "$name:/srv/media" - | zstd -3 -T0 -q | ssh -F "$DOCKYARD_SSH_CONFIG" dockyard-test "mkdir -p bench-$$ && cat > bench-$$/pipe.tar.zst"; }
s3_pipe() {
  docker cp "$name:/srv/media" - | zstd -3 -T0 -q >"$work/pipe.tar.zst"
  aws s3 cp --quiet --endpoint-url "$DOCKYARD_S3_ENDPOINT" "$work/pipe.tar.zst" "$s3url/pipe.tar.zst"
  rm -f "$work/pipe.tar.zst"
}
clean() { # keep the destinations from growing between runs
  ssh -F "$DOCKYARD_SSH_CONFIG" dockyard-test "rm -rf bench-$$"
  aws s3 rm --quiet --recursive --endpoint-url "$DOCKYARD_S3_ENDPOINT" "$s3url" >/dev/null
}

docker run -d --name "$name" --network none -v /srv/media $image sleep 100000 >/dev/null
fill_media "$name" 1
gib1=$(media_mib "$name")
echo "volume: ${gib1} MiB; ${runs} runs each, alternating"
dssh=(); pssh=(); ds3=(); ps3=(); rssh1=(); rs31=()
for _ in $(seq 1 "$runs"); do
  clean
  timed dssh peak_rss rssh1 "$bin" backup "$name" --to "$sshurl" --no-progress >/dev/null
  timed pssh ssh_pipe
  timed ds3 peak_rss rs31 "$bin" backup "$name" --to "$s3url" --no-progress >/dev/null
  timed ps3 s3_pipe
done

fill_media "$name" 4  # set1 is rewritten, sets 2-4 are added: ~4 GiB
gib4=$(media_mib "$name")
echo "volume: ${gib4} MiB; one run each for peak RSS"
clean
rssh4=(); rs34=()
peak_rss rssh4 "$bin" backup "$name" --to "$sshurl" --no-progress >/dev/null
peak_rss rs34 "$bin" backup "$name" --to "$s3url" --no-progress >/dev/null
clean

printf '\n%-46s %10s %10s %16s %16s\n' "command (${gib1} MiB volume)" "median s" "MiB/s" "RSS MiB ${gib1}" "RSS MiB ${gib4}"
row() { printf '%-46s %10.2f %10.1f %16s %16s\n' "$1" "$2" "$(echo "$gib1 / $2" | bc -l)" "$3" "$4"; }
row "dockyard backup --to ssh://..." "$(median "${dssh[@]}")" "$(printf %.1f "$(median "${rssh1[@]}")")" "$(printf %.1f "${rssh4[0]}")"
row "docker cp | zstd -3 -T0 | ssh 'cat > f'" "$(median "${pssh[@]}")" - -
row "dockyard backup --to s3://..." "$(median "${ds3[@]}")" "$(printf %.1f "$(median "${rs31[@]}")")" "$(printf %.1f "${rs34[0]}")"
row "docker cp | zstd -3 -T0 > f; aws s3 cp f" "$(median "${ps3[@]}")" - -
printf '\nratio ssh (pipeline / dockyard): %.2f   ratio s3 (pipeline / dockyard): %.2f   (>= 1.0: dockyard at least as fast)\n' \
  "$(echo "$(median "${pssh[@]}") / $(median "${dssh[@]}")" | bc -l)" "$(echo "$(median "${ps3[@]}") / $(median "${ds3[@]}")" | bc -l)"
echo "runs: ssh dockyard ${dssh[*]} | pipeline ${pssh[*]}; s3 dockyard ${ds3[*]} | pipeline ${ps3[*]}"
