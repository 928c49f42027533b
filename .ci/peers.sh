# Test peers for the remote tests: sshd, a one-node Garage on 127.0.0.1 and a second Docker engine
# (the "remote" engine, reached over that sshd). Sourced
# after lib.sh. Both live under one state directory and are reused while they answer; what this
# starts is added to STARTED_PIDS so the caller stops exactly that.

PEERS=${DOCKYARD_PEERS:-/tmp/dockyard-peers}
ENGINE2=$PEERS/engine2
ENGINE2_TLS_PORT=${DOCKYARD_TEST_ENGINE2_TLS_PORT:-42376}
SSH_PORT=${DOCKYARD_TEST_SSH_PORT:-42222}
S3_PORT=${DOCKYARD_TEST_S3_PORT:-39900}
GARAGE_VERSION=2.5.0
GARAGE_BIN=${GARAGE_BIN:-/opt/garage/bin/garage}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# sshd on 127.0.0.1:$SSH_PORT with its own host key and an unprivileged login user, plus a client
# config with Host aliases for the tests: the good one, an unknown host key, a changed host key,
# a key the server does not accept, and a port nothing listens on.
ensure_sshd() {
  local d=$PEERS/ssh
  id dockyard-ssh >/dev/null 2>&1 || useradd --create-home --shell /bin/sh --password '*' dockyard-ssh
  if [ -f "$d/sshd.pid" ] && kill -0 "$(cat "$d/sshd.pid")" 2>/dev/null && port_open "$SSH_PORT"; then
    echo "sshd: reusing the one on 127.0.0.1:$SSH_PORT"
    return
  fi
  echo "sshd: starting on 127.0.0.1:$SSH_PORT"
  rm -rf "$d" && mkdir -p "$d" && chmod 755 "$PEERS" "$d"
  local k
  for k in host_ed25519 other_host_ed25519 id_ed25519 stranger_ed25519; do
    ssh-keygen -q -t ed25519 -N '' -C "dockyard-test-$k" -f "$d/$k"
  done
  cp "$d/id_ed25519.pub" "$d/authorized_keys" && chmod 644 "$d/authorized_keys"
  echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$d/host_ed25519.pub")" >"$d/known_hosts"
  echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$d/other_host_ed25519.pub")" >"$d/changed_known_hosts"
  : >"$d/empty_known_hosts"
  mkdir -p /run/sshd
  printf '%s\n' "Port $SSH_PORT" "ListenAddress 127.0.0.1" "HostKey $d/host_ed25519" \
    "PidFile $d/sshd.pid" "AuthorizedKeysFile $d/authorized_keys" "StrictModes no" \
    "PubkeyAuthentication yes" "PasswordAuthentication no" "KbdInteractiveAuthentication no" \
    "UsePAM no" "PermitRootLogin no" "AllowUsers dockyard-ssh" "MaxStartups 200" \
    "MaxSessions 200" "SetEnv DOCKER_HOST=unix://$ENGINE2/docker.sock" >"$d/sshd_config"
  host() { # alias, identity, known_hosts, port
    printf '%s\n' "Host $1" "  HostName 127.0.0.1" "  Port $4" "  User dockyard-ssh" \
      "  IdentitiesOnly yes" "  IdentityFile $d/$2" "  UserKnownHostsFile $d/$3" \
      "  GlobalKnownHostsFile /dev/null" "  LogLevel ERROR"
  }
  {
    host dockyard-test id_ed25519 known_hosts "$SSH_PORT"
    host dockyard-test-unknown-key id_ed25519 empty_known_hosts "$SSH_PORT"
    host dockyard-test-changed-key id_ed25519 changed_known_hosts "$SSH_PORT"
    host dockyard-test-stranger stranger_ed25519 known_hosts "$SSH_PORT"
    host dockyard-test-unreachable id_ed25519 known_hosts 9
  } >"$d/config"
  chmod 644 "$d/config"
  "$(command -v sshd || echo /usr/sbin/sshd)" -D -e -f "$d/sshd_config" >"$d/sshd.log" 2>&1 &
  STARTED_PIDS+=($!)
  for _ in $(seq 1 50); do port_open "$SSH_PORT" && return; sleep 0.2; done
  echo "sshd did not come up; its log:" >&2
  tail -20 "$d/sshd.log" >&2
  exit 1
}

# A CA, a server certificate for 127.0.0.1 and a client certificate, as `docker --tlsverify` and
# DOCKER_CERT_PATH expect them (ca.pem, cert.pem, key.pem for the client).
engine2_certs() {
  local t=$1
  [ -s "$t/cert.pem" ] && return
  rm -rf "$t" && mkdir -p "$t" && chmod 700 "$t"
  (
    cd "$t"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj /CN=dockyard-test-ca -keyout ca-key.pem -out ca.pem 2>/dev/null
    sign() { # name, extensions
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$1-key.pem" -out "$1.csr" 2>/dev/null
      printf '%s\n' "$2" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
        -extfile "$1.ext" -out "$1-cert.pem" 2>/dev/null
    }
    sign server "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth"
    sign client "extendedKeyUsage=clientAuth"
    mv client-cert.pem cert.pem && mv client-key.pem key.pem && rm -f ./*.csr ./*.ext
  )
}

# A second dockerd with its own socket, data root, exec root and pid file: the remote engine of
# tests/remote_engine.rs, which reach it as DOCKER_HOST=ssh://dockyard-test (sshd sets the login
# user's DOCKER_HOST to this socket, whose group is that user's) and as tcp://127.0.0.1 with TLS
# (client certificates verified). The shared engine is never restarted or touched.
ensure_engine2() {
  local d=$ENGINE2
  if [ -f "$d/dockerd.pid" ] && kill -0 "$(cat "$d/dockerd.pid")" 2>/dev/null &&
    docker -H "unix://$d/docker.sock" version >/dev/null 2>&1 && port_open "$ENGINE2_TLS_PORT"; then
    echo "second docker engine: reusing the one on $d/docker.sock"
    return
  fi
  echo "second docker engine: starting on $d/docker.sock and tcp://127.0.0.1:$ENGINE2_TLS_PORT (TLS)"
  mkdir -p "$d" && chmod 755 "$d"
  engine2_certs "$d/tls"
  dockerd --host "unix://$d/docker.sock" --host "tcp://127.0.0.1:$ENGINE2_TLS_PORT" \
    --tlsverify --tlscacert "$d/tls/ca.pem" --tlscert "$d/tls/server-cert.pem" \
    --tlskey "$d/tls/server-key.pem" --group dockyard-ssh --data-root "$d/root" \
    --exec-root "$d/exec" --pidfile "$d/dockerd.pid" --bridge=none --iptables=false \
    --ip6tables=false >"$d/dockerd.log" 2>&1 &
  STARTED_PIDS+=($!)
  for _ in $(seq 1 60); do
    docker -H "unix://$d/docker.sock" version >/dev/null 2>&1 && return
    sleep 1
  done
  echo "the second dockerd did not come up; its log:" >&2
  tail -20 "$d/dockerd.log" >&2
  exit 1
}

# The Garage binary: built once with cargo install (about 15 minutes here) and kept in /opt/garage.
ensure_garage_bin() {
  [ -x "$GARAGE_BIN" ] && return
  local root
  root=$(dirname "$(dirname "$GARAGE_BIN")")
  echo "garage: building $GARAGE_VERSION with cargo install, once (cached in $root)"
  cargo install garage --locked --version "$GARAGE_VERSION" --root "$root" --quiet
}

# A one-node Garage on 127.0.0.1:$S3_PORT with bucket dockyard-test, a read-write key and a
# read-only key. Their ids and secrets go to $PEERS/garage/env (mode 0600), never to the output.
ensure_garage() {
  ensure_garage_bin
  local d=$PEERS/garage
  if [ -f "$d/pid" ] && kill -0 "$(cat "$d/pid")" 2>/dev/null && port_open "$S3_PORT" && [ -s "$d/env" ]; then
    echo "garage: reusing the one on 127.0.0.1:$S3_PORT"
    return
  fi
  echo "garage: starting one node on 127.0.0.1:$S3_PORT"
  rm -rf "$d" && mkdir -p "$d"
  printf '%s\n' "metadata_dir = \"$d/meta\"" "data_dir = \"$d/data\"" 'db_engine = "sqlite"' \
    'replication_factor = 1' "rpc_bind_addr = \"127.0.0.1:$((S3_PORT + 1))\"" \
    "rpc_public_addr = \"127.0.0.1:$((S3_PORT + 1))\"" \
    "rpc_secret = \"$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')\"" \
    '[s3_api]' 's3_region = "garage"' "api_bind_addr = \"127.0.0.1:$S3_PORT\"" \
    'root_domain = ".s3.garage.localhost"' >"$d/garage.toml"
  "$GARAGE_BIN" -c "$d/garage.toml" server >"$d/garage.log" 2>&1 &
  STARTED_PIDS+=($!)
  echo $! >"$d/pid"
  local g=("$GARAGE_BIN" -c "$d/garage.toml") node="" rw ro
  # `node id` reads the key file and can answer before the RPC port listens; `status` asks the
  # server itself, so wait for that before the layout commands (a CI run failed on this race).
  for _ in $(seq 1 100); do
    "${g[@]}" status >/dev/null 2>&1 &&
      node=$("${g[@]}" node id -q 2>/dev/null | cut -d@ -f1) && [ -n "$node" ] && break
    node=""
    sleep 0.2
  done
  if [ -z "$node" ]; then
    echo "garage did not answer on its RPC port; its log:" >&2
    tail -20 "$d/garage.log" >&2
    exit 1
  fi
  "${g[@]}" layout assign -z dc1 -c 1G "$node" >/dev/null
  "${g[@]}" layout apply --version 1 >/dev/null
  "${g[@]}" bucket create dockyard-test >/dev/null
  rw=$("${g[@]}" key create dockyard-rw)
  ro=$("${g[@]}" key create dockyard-ro)
  "${g[@]}" bucket allow --read --write --owner dockyard-test --key dockyard-rw >/dev/null
  "${g[@]}" bucket allow --read dockyard-test --key dockyard-ro >/dev/null
  field() { awk -v k="$1" -F': *' '$1 ~ k { print $2; exit }'; }
  (
    umask 077
    printf 'export %s\n' "DOCKYARD_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT" \
      "DOCKYARD_TEST_S3_BUCKET=dockyard-test" \
      "DOCKYARD_TEST_S3_KEY_ID=$(field 'Key ID' <<<"$rw")" \
      "DOCKYARD_TEST_S3_SECRET=$(field 'Secret key' <<<"$rw")" \
      "DOCKYARD_TEST_S3_RO_KEY_ID=$(field 'Key ID' <<<"$ro")" \
      "DOCKYARD_TEST_S3_RO_SECRET=$(field 'Secret key' <<<"$ro")" >"$d/env"
  )
  for _ in $(seq 1 50); do port_open "$S3_PORT" && return; sleep 0.2; done
  echo "garage did not come up; its log:" >&2
  tail -20 "$d/garage.log" >&2
  exit 1
}

# A real Gunicorn app image, built offline-style: debootstrap of Debian bookworm (minbase) with the
# gunicorn package from Debian's mirror, a tiny WSGI app, `docker import`. Gunicorn is PID 1 and
# writes its access and error logs into the /srv/logs volume.
GUNICORN_IMAGE=dockyard-test/gunicorn:1
ensure_gunicorn_image() {
  if docker image inspect "$GUNICORN_IMAGE" >/dev/null 2>&1; then
    echo "gunicorn image: reusing $GUNICORN_IMAGE"
    return
  fi
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  local root
  root=$(mktemp -d)
  echo "gunicorn image: debootstrap bookworm minbase + gunicorn (about a minute)"
  debootstrap --variant=minbase --include=gunicorn bookworm "$root" http://deb.debian.org/debian >"$root.log" 2>&1 ||
    { tail -20 "$root.log" >&2; exit 1; }
  mkdir -p "$root/srv/app" "$root/srv/logs"
  printf '%s\n' 'def app(environ, start_response):' \
    '    start_response("200 OK", [("Content-Type", "text/plain")])' \
    '    return [b"ok\n"]' >"$root/srv/app/app.py"
  tar -C "$root" -c . | docker import \
    -c 'VOLUME ["/srv/logs"]' -c 'WORKDIR /srv/app' \
    -c 'CMD ["gunicorn", "--bind", "127.0.0.1:8000", "--workers", "2", "--access-logfile", "/srv/logs/access.log", "--error-logfile", "/srv/logs/gunicorn.log", "app:app"]' \
    - "$GUNICORN_IMAGE" >/dev/null
  rm -rf "$root" "$root.log"
}

# A database image for the database-dump tests, built offline-style like the gunicorn one:
# debootstrap of Debian bookworm (minbase) with postgresql (15), mariadb-server (10.11) and sqlite3,
# then `docker import`. Both servers listen on their unix socket only (tests run it with
# --network none); the command picks one as the container's main process:
#   run-postgres (the CMD): postgres as user postgres, socket /run/postgresql, data in the
#     /var/lib/postgresql volume; `docker exec -u postgres C psql|pg_dump|createdb` (peer auth).
#   run-mariadb: mariadbd --user=mysql --skip-networking, socket /run/mysqld/mysqld.sock, data in
#     the /var/lib/mysql volume; `docker exec C mariadb|mariadb-dump` as root (unix_socket auth, no
#     password, no MARIADB_* variables).
# ready-postgres and ready-mariadb wait up to 60 s for the server: `docker exec C ready-postgres`.
DB_IMAGE=dockyard-test/databases:1
ensure_db_image() {
  if docker image inspect "$DB_IMAGE" >/dev/null 2>&1; then
    echo "database image: reusing $DB_IMAGE"
    return
  fi
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  local root
  # mktemp makes it 0700: as the image's / that would lock out every user but root (postgres
  # could not even run initdb, so the postinst would make no cluster).
  root=$(mktemp -d) && chmod 755 "$root"
  echo "database image: debootstrap bookworm minbase + postgresql, mariadb-server, sqlite3 (about two minutes)"
  if ! debootstrap --variant=minbase --include=postgresql,mariadb-server,sqlite3 bookworm "$root" \
    http://deb.debian.org/debian >"$root.log" 2>&1 || ! db_image_tree "$root" >>"$root.log" 2>&1; then
    tail -20 "$root.log" >&2
    rm -rf "$root" "$root.log"
    exit 1
  fi
  tar -C "$root" -c . | docker import \
    -c 'VOLUME ["/var/lib/postgresql", "/var/lib/mysql"]' -c 'ENV LANG=C.UTF-8' \
    -c 'CMD ["/usr/local/bin/run-postgres"]' \
    - "$DB_IMAGE" >/dev/null
  rm -rf "$root" "$root.log"
}

# The debootstrapped tree made into the database image, by files written here and commands run in
# a chroot of it (so a fresh machine gets the same image): both servers configured, initialised and
# given their start and readiness scripts; what no test needs is removed (.debs, docs, locales,
# the LLVM JIT).
db_image_tree() {
  local root=$1
  # PostgreSQL: postinst normally creates cluster 15/main; create it if a chroot install did not.
  [ -s "$root/var/lib/postgresql/15/main/PG_VERSION" ] || chroot "$root" pg_createcluster 15 main ||
    return 1
  printf '%s\n' "listen_addresses = ''" "ssl = off" "jit = off" \
    >"$root/etc/postgresql/15/main/conf.d/dockyard.conf" || return 1
  cat >"$root/usr/local/bin/run-postgres" <<'EOF'
#!/bin/sh
# PostgreSQL 15 cluster "main" in the foreground as user postgres, on /run/postgresql only.
set -e
data=/var/lib/postgresql/15/main
if [ "$(id -u)" = 0 ]; then
  install -d -o postgres -g postgres -m 2775 /run/postgresql
  install -d -o postgres -g postgres -m 0755 /var/lib/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
# An empty volume mounted over the data: a new cluster (the configuration stays in /etc).
[ -s "$data/PG_VERSION" ] || /usr/lib/postgresql/15/bin/initdb -D "$data" --auth-local=peer \
  --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
exec /usr/lib/postgresql/15/bin/postgres -D "$data" \
  -c config_file=/etc/postgresql/15/main/postgresql.conf "$@"
EOF
  cat >"$root/usr/local/bin/ready-postgres" <<'EOF'
#!/bin/sh
# Waits up to 60 s until PostgreSQL accepts connections on its socket (asking as postgres: a
# probe as root would log 'role "root" does not exist').
[ "$(id -u)" = 0 ] && exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
for _ in $(seq 1 300); do
  pg_isready -q -h /run/postgresql && exit 0
  sleep 0.2
done
echo "postgres not ready after 60 s" >&2
exit 1
EOF
  # MariaDB: socket only, a small redo log (the datadir is copied into every new volume), no
  # native AIO (io_uring/libaio may be refused in a container). The datadir is made again with that
  # configuration, as the postinst makes it.
  printf '%s\n' '[mariadbd]' 'skip-networking' 'innodb_log_file_size = 8M' \
    'innodb_buffer_pool_size = 64M' 'innodb_use_native_aio = 0' \
    >"$root/etc/mysql/mariadb.conf.d/90-dockyard.cnf"
  rm -rf "$root/var/lib/mysql" && mkdir -p "$root/var/lib/mysql" &&
    chroot "$root" chown mysql:mysql /var/lib/mysql &&
    chroot "$root" env TMPDIR= mariadb-install-db --rpm --cross-bootstrap --user=mysql \
      --disable-log-bin --skip-test-db || return 1
  cat >"$root/usr/local/bin/run-mariadb" <<'EOF'
#!/bin/sh
# MariaDB in the foreground, on /run/mysqld/mysqld.sock only; root logs in by unix_socket.
set -e
install -d -o mysql -g mysql -m 0755 /run/mysqld
[ -d /var/lib/mysql/mysql ] || { chown mysql:mysql /var/lib/mysql &&
  mariadb-install-db --rpm --cross-bootstrap --user=mysql --disable-log-bin --skip-test-db >/dev/null; }
exec mariadbd --user=mysql --skip-networking "$@"
EOF
  cat >"$root/usr/local/bin/ready-mariadb" <<'EOF'
#!/bin/sh
# Waits up to 60 s until MariaDB answers on its socket.
for _ in $(seq 1 300); do
  mariadb-admin --silent ping >/dev/null 2>&1 && exit 0
  sleep 0.2
done
echo "mariadb not ready after 60 s" >&2
exit 1
EOF
  chmod 755 "$root"/usr/local/bin/run-* "$root"/usr/local/bin/ready-*
  # Smaller: nothing here runs apt, reads docs or uses the JIT (jit = off above).
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root"/usr/lib/postgresql/15/lib/llvmjit* "$root"/usr/lib/postgresql/15/lib/bitcode \
    "$root"/usr/lib/x86_64-linux-gnu/libLLVM-14.so* "$root"/usr/lib/x86_64-linux-gnu/libz3.so*
}

# Everything the remote-destination tests need, exported for cargo test.
ensure_peers() {
  id dockyard-ssh >/dev/null 2>&1 || useradd --create-home --shell /bin/sh --password '*' dockyard-ssh
  ensure_engine2
  ensure_sshd
  ensure_garage
  ensure_gunicorn_image
  export DOCKYARD_TEST_GUNICORN_IMAGE=$GUNICORN_IMAGE
  ensure_db_image
  export DOCKYARD_TEST_DB_IMAGE=$DB_IMAGE
  # shellcheck disable=SC1091
  source "$PEERS/garage/env"
  export DOCKYARD_TEST_SSH_CONFIG=$PEERS/ssh/config
  export DOCKYARD_TEST_GARAGE_BIN=$GARAGE_BIN
  export DOCKYARD_TEST_ENGINE2=unix://$ENGINE2/docker.sock
  export DOCKYARD_TEST_ENGINE2_TLS=tcp://127.0.0.1:$ENGINE2_TLS_PORT
  export DOCKYARD_TEST_ENGINE2_CERTS=$ENGINE2/tls
}
