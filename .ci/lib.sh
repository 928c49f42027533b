# Shared set-up for .ci/run and .ci/demo: install what is missing, start a Docker engine if none
# answers. Sourced, not run. Everything it starts is recorded so the caller can stop exactly that.

STARTED_PIDS=()

need_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  [ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx sh || missing+=(busybox-static)
  command -v zstd >/dev/null || missing+=(zstd)
  [ -x /usr/bin/time ] || missing+=(time)   # tests/scale.rs measures dockyard's peak RSS with it
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  command -v ssh-keygen >/dev/null || missing+=(openssh-client)
  command -v openssl >/dev/null || missing+=(openssl)   # the remote engine's TLS certificates
  command -v man >/dev/null || missing+=(man-db)   # tests/operator.rs renders the manual page
  command -v age >/dev/null || missing+=(age)   # tests/encryption.rs decrypts with the age tool
  command -v docker-compose >/dev/null || missing+=(docker-compose)   # tests/compose.rs
  # systemd-analyze: tests/deb.rs and tests/operator.rs verify the units (systemd need not run).
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # busybox-static must be the static one: the test image has no libc.
  if ! file -L /bin/busybox 2>/dev/null | grep -q static && ! ldd /bin/busybox 2>&1 | grep -q "not a dynamic"; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
  fi
}

# cargo-deb builds the .deb (packaging/deb.sh, tests/deb.rs); built once, ~2 min, then kept in
# ~/.cargo/bin.
need_cargo_deb() {
  command -v cargo-deb >/dev/null && return
  echo "installing: cargo-deb (cargo install, once)"
  cargo install cargo-deb --locked --quiet
}

ensure_docker() {
  if docker version >/dev/null 2>&1; then
    echo "docker engine: reusing the running one"
    return
  fi
  local log=${TMPDIR:-/tmp}/dockyard-dockerd.log
  echo "docker engine: starting dockerd (log: $log)"
  dockerd --bridge=none --iptables=false --ip6tables=false >"$log" 2>&1 &
  STARTED_PIDS+=($!)
  for _ in $(seq 1 60); do
    docker version >/dev/null 2>&1 && return
    sleep 1
  done
  echo "dockerd did not come up; its log:" >&2
  tail -20 "$log" >&2
  exit 1
}

stop_started() {
  for pid in "${STARTED_PIDS[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  return 0
}
