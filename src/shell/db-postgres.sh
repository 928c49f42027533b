# dockyard's PostgreSQL steps, run by `docker exec` as the postgres user in the database's own
# container. The credentials come from that container's own environment (PGUSER, POSTGRES_USER,
# PGPASSWORD, POSTGRES_PASSWORD, POSTGRES_PASSWORD_FILE) and never leave it.
#   dump DB         pg_dump of DB (empty: POSTGRES_DB, else the user's own) on stdout
#   probe DB        prints `absent`, `empty` or `tables N`
#   load DB FORCE   reads a dump on stdin (psql in restricted mode: dockyard's framing begins it
#                   with `\restrict KEY`) into a new database beside DB, which is not touched;
#                   refused (exit 3) if DB holds tables and FORCE is not `force`
#   promote DB FORCE  puts the loaded database in DB's place: DB renamed aside, the new one
#                   renamed to DB, then the old one dropped (DB put back if the rename fails);
#                   the same refusal, checked again (the loaded database is dropped then)
#   discard DB      drops the loaded database
set -eu
mode=$1
user=${PGUSER:-${POSTGRES_USER:-postgres}}
db=${2:-${POSTGRES_DB:-$user}}
case $db in
'' | -* | *[!A-Za-z0-9_-]* | dockyard_restore_* | dockyard_replaced_*)
  echo "$0: the database name \"$db\" is not one dockyard takes (letters, digits, _ and -; not dockyard's own dockyard_restore_* or dockyard_replaced_*)" >&2
  exit 2
  ;;
esac
if [ -z "${PGPASSWORD:-}" ]; then
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ] && [ -r "$POSTGRES_PASSWORD_FILE" ]; then
    PGPASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
    export PGPASSWORD
  elif [ -n "${POSTGRES_PASSWORD:-}" ]; then
    PGPASSWORD=$POSTGRES_PASSWORD
    export PGPASSWORD
  fi
fi
PGUSER=$user
export PGUSER
sql() { psql -X -q -A -t --no-password -v ON_ERROR_STOP=1 "$@"; }
probe() {
  n=$(sql -d postgres -c "select count(*) from pg_database where datname = '$db'")
  if [ "$n" = 0 ]; then
    echo absent
    return
  fi
  n=$(sql -d "$db" -c "select count(*) from pg_class c join pg_namespace s on s.oid = c.relnamespace where s.nspname not in ('pg_catalog', 'information_schema') and s.nspname not like 'pg_toast%' and c.relkind in ('r', 'v', 'm', 'S', 'f', 'p')")
  if [ "$n" = 0 ]; then echo empty; else echo "tables $n"; fi
}
# Exits 3 unless DB is absent or empty, or $1 is `force`.
refuse_full() {
  state=$(probe)
  if [ "$state" != absent ] && [ "$state" != empty ] && [ "$1" != force ]; then
    echo "$0: database $db is not empty ($state); nothing was changed" >&2
    exit 3
  fi
}
# The database a dump is loaded into before it takes DB's place, and DB's name while it is
# replaced: named by a checksum of DB, never DB itself, within PostgreSQL's 63 bytes.
sum=$(printf '%s' "$db" | cksum | cut -d ' ' -f 1)
tmp=dockyard_restore_$sum
old=dockyard_replaced_$sum
# Ends every session of database $1 but this one's.
terminate() {
  sql -d postgres -c "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = '$1' and pid <> pg_backend_pid()" >/dev/null
}
# Renames database $1 to $2, ending the sessions on $1 first (tried 5 times: a client may come back).
rename() {
  for _ in 1 2 3 4 5; do
    terminate "$1"
    if sql -d postgres -c "alter database \"$1\" rename to \"$2\"" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  sql -d postgres -c "alter database \"$1\" rename to \"$2\""
}
case $mode in
dump)
  exec pg_dump --no-password --dbname="$db"
  ;;
probe)
  probe
  ;;
load)
  refuse_full "${3:-}"
  sql -d postgres -c "drop database if exists \"$tmp\" with (force)"
  sql -d postgres -c "create database \"$tmp\""
  if ! psql -X -q --no-password -v ON_ERROR_STOP=1 --single-transaction -d "$tmp" >/dev/null; then
    sql -d postgres -c "drop database if exists \"$tmp\" with (force)" || true
    echo "$0: the dump did not load; database $db is as it was" >&2
    exit 1
  fi
  ;;
promote)
  if ! (refuse_full "${3:-}"); then
    sql -d postgres -c "drop database if exists \"$tmp\" with (force)" || true
    exit 3
  fi
  sql -d postgres -c "drop database if exists \"$old\" with (force)"
  was=$(probe)
  if [ "$was" != absent ]; then rename "$db" "$old"; fi
  if ! rename "$tmp" "$db"; then
    if [ "$was" != absent ]; then rename "$old" "$db" || true; fi
    echo "$0: the loaded database could not take the place of $db, which is as it was" >&2
    exit 1
  fi
  if [ "$was" != absent ]; then
    sql -d postgres -c "drop database if exists \"$old\" with (force)" ||
      echo "$0: warning: could not drop the replaced database $old; drop it by hand" >&2
  fi
  ;;
discard)
  sql -d postgres -c "drop database if exists \"$tmp\" with (force)"
  ;;
*)
  echo "$0: unknown mode $mode" >&2
  exit 2
  ;;
esac
