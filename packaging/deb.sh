#!/usr/bin/env bash
# Builds dockyard_<version>_amd64.deb with cargo-deb (README, Install): the binary, a manual page per
# command, bash/zsh/fish completions, the systemd units of config/systemd and
# /etc/dockyard/dockyard.toml (a conffile). The pages and completions come from the binary itself,
# so they are written here into target/deb-stage (the asset paths of Cargo.toml's
# [package.metadata.deb]) before `cargo deb --no-build` gathers the files.
#
# Usage: packaging/deb.sh [--bin BINARY] [--out DIR] [--fast]
#   --bin   package this binary (tests/deb.rs packages the test build) instead of building the
#           release binary with `cargo build --release --locked`
#   --out   where the .deb goes (default: target/debian); its path is printed last
#   --fast  lighter compression (cargo deb --fast)
set -euo pipefail
cd "$(dirname "$0")/.."

bin= out= fast=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --fast) fast=(--fast); shift ;;
    *) echo "packaging/deb.sh: unknown argument $1 (usage: packaging/deb.sh [--bin BINARY] [--out DIR] [--fast])" >&2; exit 2 ;;
  esac
done

if [ -z "$bin" ]; then
  cargo build --release --locked
  bin=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/dockyard
fi
[ -x "$bin" ] || { echo "packaging/deb.sh: no executable at $bin" >&2; exit 2; }
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked

# One packaging at a time per checkout: the stage directory is fixed by Cargo.toml.
stage=target/deb-stage
mkdir -p target
exec 9>target/deb-stage.lock
flock 9
rm -rf "$stage"
mkdir -p "$stage/man" "$stage/completions"
install -m 755 "$bin" "$stage/dockyard"
"$bin" man --dir "$stage/man" >/dev/null
gzip -9n "$stage"/man/*.1
"$bin" completions bash >"$stage/completions/dockyard"
"$bin" completions zsh >"$stage/completions/_dockyard"
"$bin" completions fish >"$stage/completions/dockyard.fish"

cargo deb --no-build --no-strip --quiet "${fast[@]}" --output "${out:-target/debian}"
