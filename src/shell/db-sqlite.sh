# dockyard's SQLite steps, run by `docker exec` in the container that holds the file, as its own
# user, with the `sqlite3` tool or else Python's sqlite3 module.
#   dump FILE         a `.dump` of FILE, read in one transaction, on stdout
#   probe FILE        prints `absent`, `empty` or `tables N`
#   load FILE FORCE   reads a dump on stdin into a new file beside FILE (FILE is not touched),
#                     with sqlite3 -safe (no .shell, ATTACH or file functions) or Python with
#                     ATTACH denied; refused (exit 3) if FILE holds tables and FORCE is not `force`
#   promote FILE FORCE  renames the loaded file over FILE (the same refusal, checked again)
#   discard FILE      removes the loaded file
set -eu
mode=$1
file=$2
have() { command -v "$1" >/dev/null 2>&1; }
if ! have sqlite3 && ! have python3; then
  echo "$0: the container has neither sqlite3 nor python3 to read $file with" >&2
  exit 127
fi
tables() {
  if have sqlite3; then
    sqlite3 -readonly "$file" "select count(*) from sqlite_master where type in ('table', 'view')"
  else
    python3 -c 'import sqlite3, sys, urllib.parse
c = sqlite3.connect("file:" + urllib.parse.quote(sys.argv[1]) + "?mode=ro", uri=True)
print(c.execute("select count(*) from sqlite_master where type in (\"table\", \"view\")").fetchone()[0])' "$file"
  fi
}
probe() {
  if [ ! -e "$file" ]; then
    echo absent
  elif [ ! -s "$file" ]; then
    echo empty
  else
    n=$(tables)
    if [ "$n" = 0 ]; then echo empty; else echo "tables $n"; fi
  fi
}
# Exits 3 unless FILE is absent or empty, or $1 is `force`.
refuse_full() {
  state=$(probe)
  if [ "$state" != absent ] && [ "$state" != empty ] && [ "$1" != force ]; then
    echo "$0: $file is not empty ($state); nothing was changed" >&2
    exit 3
  fi
}
# The file a dump is loaded into before it takes FILE's place.
tmp=$file.dockyard-restore
case $mode in
dump)
  if [ ! -f "$file" ]; then
    echo "$0: there is no SQLite file $file in this container" >&2
    exit 2
  fi
  if have sqlite3; then exec sqlite3 -readonly -bail "$file" .dump; fi
  exec python3 -c 'import sqlite3, sys, urllib.parse
c = sqlite3.connect("file:" + urllib.parse.quote(sys.argv[1]) + "?mode=ro", uri=True, isolation_level=None)
c.execute("begin")
for line in c.iterdump():
    sys.stdout.write(line + "\n")' "$file"
  ;;
probe)
  probe
  ;;
load)
  refuse_full "${3:-}"
  rm -f "$tmp"
  loaded=0
  if have sqlite3; then
    sqlite3 -safe -bail "$tmp" >/dev/null || loaded=$?
  else
    python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
deny = (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH)
c.set_authorizer(lambda action, *rest: sqlite3.SQLITE_DENY if action in deny else sqlite3.SQLITE_OK)
c.executescript(sys.stdin.read())
c.commit()' "$tmp" || loaded=$?
  fi
  if [ "$loaded" != 0 ]; then
    rm -f "$tmp"
    echo "$0: the dump did not load; $file is as it was" >&2
    exit 1
  fi
  ;;
promote)
  refuse_full "${3:-}"
  # The new file gets the old one's owner and mode (the app may not be root); the old one's
  # side files go only once it is replaced (a WAL of another file is ignored by SQLite).
  if [ -e "$file" ]; then
    chown "$(stat -c %u:%g "$file")" "$tmp" 2>/dev/null || true
    chmod "$(stat -c %a "$file")" "$tmp"
  fi
  mv -f "$tmp" "$file"
  rm -f "$file-wal" "$file-shm" "$file-journal"
  ;;
discard)
  rm -f "$tmp"
  ;;
*)
  echo "$0: unknown mode $mode" >&2
  exit 2
  ;;
esac
