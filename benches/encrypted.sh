#!/usr/bin/env bash
# Encryption's cost: one dockyard binary, plain and age-encrypted (an X25519 recipient), backup
# and restore alternating on the same ~1 GiB media-like volume (incompressible video, text
# reports, small files) in one run. Prints medians, the encrypted/plain ratios and peak RSS.
# Usage: benches/encrypted.sh [BIN] [runs]   (default: target's release build, 5 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/x86_64-unknown-linux-gnu/release/dockyard}") runs=${2:-5}
source .ci/lib.sh
source benches/lib.sh
need_packages
bench_tools
ensure_docker
work=$(mktemp -d)
name=dyb-enc-$$
age-keygen -o "$work/key.txt" 2>/dev/null
recipient=$(age-keygen -y "$work/key.txt")
media_pair "$name"
echo "volume: ${total} MiB; ${runs} runs each, alternating plain / encrypted"

b_plain=() b_enc=() r_plain=() r_enc=() rss_b_plain=() rss_b_enc=() rss_r_plain=() rss_r_enc=()
for i in $(seq 1 "$runs"); do
  order="plain enc"
  [ $((i % 2)) = 0 ] && order="enc plain"
  for how in $order; do
    flags=() open=()
    if [ "$how" = enc ]; then
      flags=(--encrypt-to "$recipient")
      open=(--identity "$work/key.txt")
    fi
    rm -rf "${work:?}/$how"
    sync
    timed "b_$how" peak_rss "rss_b_$how" "$bin" backup "$name" --to "$work/$how" --no-progress "${flags[@]}" >/dev/null
    sync
    timed "r_$how" peak_rss "rss_r_$how" "$bin" restore "$name-r" --from "$work/$how" --container "$name" \
      --no-safety-backup --no-progress "${open[@]}" >/dev/null
  done
done
row() { printf '%-28s %10.2f %10.1f %14.1f\n' "$1" "$2" "$(echo "$total / $2" | bc -l)" "$3"; }
printf '\n%-28s %10s %10s %14s\n' "command" "median s" "MiB/s" "peak RSS MiB"
row "backup, plain" "$(median "${b_plain[@]}")" "$(median "${rss_b_plain[@]}")"
row "backup, encrypted (age)" "$(median "${b_enc[@]}")" "$(median "${rss_b_enc[@]}")"
row "restore, plain" "$(median "${r_plain[@]}")" "$(median "${rss_r_plain[@]}")"
row "restore, encrypted (age)" "$(median "${r_enc[@]}")" "$(median "${rss_r_enc[@]}")"
ratio() { printf '%.2f' "$(echo "$(median "${!1}") / $(median "${!2}")" | bc -l)"; }
echo
echo "backup  encrypted/plain time: $(ratio 'b_enc[@]' 'b_plain[@]')   restore encrypted/plain time: $(ratio 'r_enc[@]' 'r_plain[@]')   (target <= 1.10)"
echo "stored: plain $(du -sm "$work/plain" | cut -f1) MiB, encrypted $(du -sm "$work/enc" | cut -f1) MiB"
echo "runs: backup plain ${b_plain[*]} | encrypted ${b_enc[*]}"
echo "runs: restore plain ${r_plain[*]} | encrypted ${r_enc[*]}"
