# dockyard logs: delete the rotated files that shipped (only if still the size that shipped: an
# app that had not reopened yet may still append to one, and then it ships again next run),
# delete surplus rotated files, record what shipped, and release the lock if OWNER holds it.
# POSIX sh; runs as the log directory's owner, like logs-begin.sh.
#
# Usage: logs-finish.sh DIR OWNER COUNT [NAME SIZE KEY]... [SURPLUS_NAME]...
#   COUNT triples of a shipped file, its shipped size and its key, then names of surplus files.
# Output: NUL-terminated records "DELETED <name>", "KEPT <name>".
set -u
dir=$1 owner=$2 count=$3
shift 3
S=.dockyard

record() { printf '%s\0' "$*"; }

cd -P -- "$dir" || exit 3
[ -d "$S" ] && [ ! -L "$S" ] || { echo "dockyard logs: $dir/$S is gone or not a directory" >&2; exit 4; }
case "$count" in '' | *[!0-9]*) exit 2 ;; esac

# log_line NAME SIZE KEY: appends to the shipped log; anything but a regular file there (a
# symlink, a FIFO that would block the append) is replaced.
log_line() {
  if [ -e "$S/shipped.log" ] || [ -L "$S/shipped.log" ]; then
    [ -f "$S/shipped.log" ] && [ ! -L "$S/shipped.log" ] || rm -f -- "$S/shipped.log"
  fi
  printf '%s %s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" "$2" "$3" >>"$S/shipped.log"
}

while [ "$count" -gt 0 ] && [ $# -ge 3 ]; do
  name=$1 size=$2 key=$3
  shift 3
  count=$((count - 1))
  case "$name" in .* | */* | '') continue ;; esac
  if [ -f "./$name" ] && [ ! -L "./$name" ] && [ "$(wc -c <"./$name")" -eq "$size" ]; then
    rm -f -- "./$name" && record "DELETED $name" && log_line "$name" "$size" "$key"
  else
    record "KEPT $name"
  fi
done
for name in "$@"; do
  case "$name" in .* | */* | '') continue ;; esac
  [ -L "./$name" ] && continue
  rm -f -- "./$name" && record "DELETED $name"
done
if [ -f "$S/shipped.log" ] && [ ! -L "$S/shipped.log" ] && [ "$(wc -l <"$S/shipped.log")" -gt 2000 ]; then
  rm -f -- "$S/shipped.tmp"
  tail -n 1000 "$S/shipped.log" >"$S/shipped.tmp" && mv -f -- "$S/shipped.tmp" "$S/shipped.log"
fi
if [ -d "$S/lock" ] && [ ! -L "$S/lock" ]; then
  held=
  if [ -f "$S/lock/owner" ] && [ ! -L "$S/lock/owner" ]; then
    IFS= read -r held <"$S/lock/owner" 2>/dev/null
  fi
  [ "$held" = "$owner" ] && rm -rf -- "$S/lock"
fi
exit 0
