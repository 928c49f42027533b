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
'' | -* | *[!A-Za-z0-9_-]* | dockyard_restore_* | dockyard_replaced_* | template0 | template1)
  echo "$0: the database name \"$db\" is not one dockyard takes (letters, digits, _ and -; not template0, template1 or dockyard's own dockyard_restore_* and dockyard_replaced_*)" >&2
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
# Where the statements about databases run: template1, so that DB may be `postgres` (a database
# cannot rename itself); new databases are made from template0, as pg_dump's output expects.
admin=template1
probe() {
  n=$(sql -d "$admin" -c "select count(*) from pg_database where datname = '$db'")
  if [ "$n" = 0 ]; then
    echo absent
    return
  fi
  n=$(sql -d "$db" -c "select count(*) from pg_class c join pg_namespace s on s.oid = c.relnamespace where s.nspname not in ('pg_catalog', 'information_schema') and s.nspname not like 'pg_toast%' and c.relkind in ('r', 'v', 'm', 'S', 'f', 'p')")
  if [ "$n" = 0 ]; then echo empty; else echo "tables $n"; fi
}
# Exits 2 unless psql has the restricted mode loads run in (\restrict: PostgreSQL 13.22, 14.19,
# 15.14, 16.10, 17.6 and later), so a forged dump's `\!` never reaches a shell.
need_restrict() {
  if ! sql -d "$admin" -c '\?' 2>/dev/null | grep -q 'restrict'; then
    printf '%s\n' "$0: this psql ($(psql --version)) has no restricted mode (\\restrict: PostgreSQL 13.22, 14.19, 15.14, 16.10, 17.6 and later), in which dockyard loads dumps; update the container's PostgreSQL, or load the dump by hand (README, \"Databases\")" >&2
    exit 2
  fi
}
# Exits 3 unless DB is absent or empty, or $1 is `force`.
refuse_full() {
  state=$(probe)
  if [ "$state" != absent ] && [ "$state" != empty ] && [ "$1" != force ]; then
    echo "$0: database $db is not empty ($state); nothing was changed" >&2
    exit 3
  fi
}
# Exits 2 if DB's replaced copy of an earlier restore, cut short between its renames, is there:
# it may be the only copy of what DB held.
need_no_old() {
  if [ "$(sql -d "$admin" -c "select count(*) from pg_database where datname = '$old'")" != 0 ]; then
    echo "$0: database $old holds what $db held before a restore that was cut short; rename it back to $db (or drop it), then run the restore again" >&2
    exit 2
  fi
}
# The database a dump is loaded into before it takes DB's place, and DB's name while it is
# replaced: named by a checksum of DB, never DB itself, within PostgreSQL's 63 bytes.
sum=$(printf '%s' "$db" | cksum | cut -d ' ' -f 1)
tmp=dockyard_restore_$sum
old=dockyard_replaced_$sum
# Ends every session of database $1 but this one's.
terminate() {
  sql -d "$admin" -c "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = '$1' and pid <> pg_backend_pid()" >/dev/null
}
# Renames database $1 to $2, ending the sessions on $1 first (tried 5 times: a client may come back).
rename() {
  for _ in 1 2 3 4 5; do
    terminate "$1"
    if sql -d "$admin" -c "alter database \"$1\" rename to \"$2\"" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  sql -d "$admin" -c "alter database \"$1\" rename to \"$2\""
}
case $mode in
dump)
  exec pg_dump --no-password --dbname="$db"
  ;;
probe)
  need_restrict
  probe
  ;;
load)
  need_restrict
  refuse_full "${3:-}"
  need_no_old
  # The new database is DB's owner's (the user's, when DB is absent).
  owner=$(sql -d "$admin" -c "select pg_get_userbyid(datdba) from pg_database where datname = '$db'")
  owner=${owner:-$user}
  owner=$(printf '%s' "$owner" | sed 's/"/""/g')
  sql -d "$admin" -c "drop database if exists \"$tmp\" with (force)"
  sql -d "$admin" -c "create database \"$tmp\" owner \"$owner\" template template0"
  if ! psql -X -q --no-password -v ON_ERROR_STOP=1 --single-transaction -d "$tmp" >/dev/null; then
    sql -d "$admin" -c "drop database if exists \"$tmp\" with (force)" || true
    echo "$0: the dump did not load; database $db is as it was" >&2
    exit 1
  fi
  ;;
promote)
  was=$(probe) || exit 1
  if [ "$was" != absent ] && [ "$was" != empty ] && [ "${3:-}" != force ]; then
    sql -d "$admin" -c "drop database if exists \"$tmp\" with (force)" || true
    echo "$0: database $db is no longer empty ($was); nothing was changed" >&2
    exit 3
  fi
  need_no_old
  if [ "$was" != absent ]; then rename "$db" "$old"; fi
  if ! rename "$tmp" "$db"; then
    if [ "$was" = absent ]; then
      echo "$0: the loaded database could not take the place of $db, which is absent as it was" >&2
    elif rename "$old" "$db"; then
      echo "$0: the loaded database could not take the place of $db, which is as it was" >&2
    else
      echo "$0: the loaded database could not take the place of $db, and $db is now named $old: rename it back" >&2
    fi
    exit 1
  fi
  if [ "$was" != absent ]; then
    sql -d "$admin" -c "drop database if exists \"$old\" with (force)" ||
      echo "$0: warning: could not drop the replaced database $old; drop it by hand" >&2
  fi
  ;;
discard)
  sql -d "$admin" -c "drop database if exists \"$tmp\" with (force)"
  ;;
*)
  echo "$0: unknown mode $mode" >&2
  exit 2
  ;;
esac
