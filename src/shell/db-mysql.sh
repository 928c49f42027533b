# dockyard's MySQL and MariaDB steps, run by `docker exec` in the database's own container. The
# credentials come from that container's own environment (MARIADB_ROOT_PASSWORD[_FILE],
# MYSQL_ROOT_PASSWORD[_FILE], else MARIADB_USER with MARIADB_PASSWORD[_FILE] or MYSQL_USER with
# MYSQL_PASSWORD[_FILE]; none: root over the socket), handed to the tools as MYSQL_PWD, never on
# a command line, and never leave it.
#   dump DB         a dump of DB (empty: MARIADB_DATABASE or MYSQL_DATABASE) on stdout
#   probe DB        prints `absent`, `empty` or `tables N`
#   load DB FORCE   creates DB if absent and reads a dump on stdin into it (the client in its
#                   sandbox where it has one); refused (exit 3) if DB holds tables and FORCE is not
#                   `force`, else with `force` DB is emptied first (MySQL cannot rename a
#                   database). The load counts only if the client printed the line dockyard's
#                   framing asks for last (so a dump cut short at a statement's end is not kept);
#                   else DB is left as it was when it was absent or empty, and empty when it was
#                   replaced.
#   promote DB      nothing (the load went into DB itself)
#   discard DB WAS  undoes a load whose dump turned out damaged: DB dropped, and created again
#                   empty unless WAS is `absent`
set -eu
mode=$1
db=${2:-${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}}
case $db in
'')
  echo "$0: no database named, and the container sets neither MARIADB_DATABASE nor MYSQL_DATABASE" >&2
  exit 2
  ;;
-* | *[!A-Za-z0-9_-]*)
  echo "$0: the database name \"$db\" is not one dockyard takes (letters, digits, _ and -)" >&2
  exit 2
  ;;
esac
user=root
pass=${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}
for f in "${MARIADB_ROOT_PASSWORD_FILE:-}" "${MYSQL_ROOT_PASSWORD_FILE:-}"; do
  if [ -z "$pass" ] && [ -n "$f" ] && [ -r "$f" ]; then pass=$(cat "$f"); fi
done
# Else the app's user, with its password (or password file) of the same image's variables.
if [ -z "$pass" ] && [ -n "${MARIADB_USER:-}" ]; then
  user=$MARIADB_USER
  pass=${MARIADB_PASSWORD:-}
  if [ -z "$pass" ] && [ -r "${MARIADB_PASSWORD_FILE:-}" ]; then pass=$(cat "$MARIADB_PASSWORD_FILE"); fi
elif [ -z "$pass" ] && [ -n "${MYSQL_USER:-}" ]; then
  user=$MYSQL_USER
  pass=${MYSQL_PASSWORD:-}
  if [ -z "$pass" ] && [ -r "${MYSQL_PASSWORD_FILE:-}" ]; then pass=$(cat "$MYSQL_PASSWORD_FILE"); fi
fi
if [ -n "$pass" ]; then
  MYSQL_PWD=$pass
  export MYSQL_PWD
fi
client=mysql
if command -v mariadb >/dev/null 2>&1; then client=mariadb; fi
# Loads run with the client's shell and file commands off where it can: MariaDB's --sandbox
# (`system`, `source`, `tee` and the like), else MySQL's --system-command=OFF (`system` only);
# always without LOAD DATA LOCAL (--local-infile=0), which would read the container's files.
guard=
if "$client" --help 2>/dev/null | grep -q -e '--sandbox'; then
  guard=--sandbox
elif "$client" --help 2>/dev/null | grep -q -e '--system-command'; then
  guard=--system-command=OFF
fi
dumper=mysqldump
if command -v mariadb-dump >/dev/null 2>&1; then dumper=mariadb-dump; fi
sql() { "$client" --user="$user" -N -B "$@"; }
probe() {
  n=$(sql -e "select count(*) from information_schema.schemata where schema_name = '$db'")
  if [ "$n" = 0 ]; then
    echo absent
    return
  fi
  n=$(sql -e "select count(*) from information_schema.tables where table_schema = '$db'")
  if [ "$n" = 0 ]; then echo empty; else echo "tables $n"; fi
}
# Drops DB, and creates it again empty unless $1 (what it was before the load) is `absent`.
undo() {
  sql -e "drop database if exists \`$db\`" || true
  if [ "$1" != absent ]; then sql -e "create database \`$db\`" || true; fi
}
case $mode in
dump)
  exec "$dumper" --user="$user" --single-transaction --routines --triggers --hex-blob "$db"
  ;;
probe)
  probe
  ;;
load)
  state=$(probe)
  if [ "$state" != absent ] && [ "$state" != empty ] && [ "${3:-}" != force ]; then
    echo "$0: database $db is not empty ($state); nothing was changed" >&2
    exit 3
  fi
  if [ "$state" != absent ] && [ "$state" != empty ]; then
    sql -e "drop database \`$db\`"
  fi
  sql -e "create database if not exists \`$db\`"
  if [ -z "$guard" ]; then
    echo "$0: warning: this $client has neither --sandbox nor --system-command: a dump's \`system\` lines would run" >&2
  fi
  last=$({ "$client" $guard --local-infile=0 --user="$user" -N -B "$db" || echo dockyard-load-failed; } | tail -n 1)
  if [ "$last" != dockyard-load-complete ]; then
    undo "$state"
    echo "$0: the dump did not load; database $db is $([ "$state" = absent ] && echo absent || echo empty) again" >&2
    exit 1
  fi
  ;;
promote) ;;
discard)
  undo "${3:-empty}"
  ;;
*)
  echo "$0: unknown mode $mode" >&2
  exit 2
  ;;
esac
