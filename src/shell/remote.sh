# dockyard's operations on an SSH destination, run as `sh -c <this> dockyard-remote OP DIR ARG...`
# on the remote host. POSIX sh. Every value (the directory, object and temp names, sizes) is an
# argument, never part of this text; dockyard checks names before sending them (no `..`, no
# leading `-` or `.` in a component).
#
#   prepare DIR                    make DIR (private), check it is a writable directory
#   put DIR TEMP PARENT            stream stdin into TEMP (under a flock, synced every second)
#   finish DIR TEMP NAME SIZE      check TEMP holds SIZE bytes, sync, rename it to NAME
#   remove-temp DIR TEMP           remove TEMP
#   get DIR NAME                   stream NAME (a regular file, not a symlink) to stdout
#   get-small DIR LIMIT NAME...    each NAME as a line with its size then its bytes, or a line `-`
#                                  if it is not a regular file or is over LIMIT bytes
#   exists DIR                     exit 0 if DIR is a directory, else 44
#   list DIR [FOLDER]              the regular files directly in DIR, or with FOLDER those below
#                                  DIR/FOLDER at any depth, one line each: `SIZE ./NAME` (stat), or
#                                  where stat has no -c an `ls -ln` line (size in the fifth field,
#                                  ./NAME after the eighth)
#   delete DIR NAME                remove NAME (exit 44 if it is not there)
#   remove-stale DIR SUFFIX        remove hidden temp files whose writer is gone; print them
#
# Exit 44: no such object.
op=$1 dir=$2
shift 2
not_found=44

case $op in
prepare)
  umask 077
  mkdir -p -- "$dir" || exit 1
  [ -d "$dir" ] && [ -w "$dir" ] || { echo "cannot write into $dir: Permission denied" >&2; exit 1; }
  ;;
put)
  temp=$1 parent=$2
  umask 077
  cd -- "$dir" || exit 1
  if [ -n "$parent" ]; then mkdir -p -- "$parent" || exit 1; fi
  : >"$temp" || exit 1
  ( while sleep 1; do sync -- "$temp" 2>/dev/null || exit 0; done ) </dev/null >/dev/null 2>&1 &
  bg=$!
  if command -v flock >/dev/null 2>&1; then flock "$temp" cat >"$temp"; else cat >"$temp"; fi
  rc=$?
  kill "$bg" 2>/dev/null
  exit "$rc"
  ;;
finish)
  temp=$1 name=$2 want=$3
  cd -- "$dir" || exit 1
  size=$(wc -c <"$temp") || exit 1
  if [ "$size" -ne "$want" ]; then
    echo "uploaded $size bytes, sent $want" >&2
    rm -f -- "$temp"
    exit 1
  fi
  # Best effort: busybox's sync takes no file.
  sync -- "$temp" 2>/dev/null
  mv -f -- "$temp" "$name" || exit 1
  sync -- . 2>/dev/null
  exit 0
  ;;
remove-temp)
  cd -- "$dir" && rm -f -- "$1"
  ;;
get)
  name=$1
  cd -- "$dir" 2>/dev/null && [ -f "$name" ] && [ ! -L "$name" ] || exit "$not_found"
  exec cat -- "$name"
  ;;
get-small)
  limit=$1
  shift
  cd -- "$dir" 2>/dev/null || exit "$not_found"
  for name in "$@"; do
    size=-
    if [ -f "$name" ] && [ ! -L "$name" ]; then
      size=$(wc -c <"$name" 2>/dev/null | tr -d ' ') || size=-
      [ -n "$size" ] && [ "$size" -le "$limit" ] 2>/dev/null || size=-
    fi
    printf '%s\n' "$size"
    # A file replaced between the two reads breaks the framing; dockyard then reads one by one.
    [ "$size" = - ] || cat -- "$name" || exit 1
  done
  exit 0
  ;;
exists)
  [ -d "$dir" ] || exit "$not_found"
  ;;
list)
  # Sizes without reading a byte or running a process per file: one `stat -c` (GNU, busybox) or,
  # where there is none, one `ls -ln` (BSD), for all the files find gives it; in the C locale and
  # without the variables that change GNU ls's columns or quoting.
  folder=${1-}
  cd -- "$dir" 2>/dev/null || exit 0
  if [ -n "$folder" ]; then [ -d "$folder" ] || exit 0; fi
  LC_ALL=C
  export LC_ALL
  unset TIME_STYLE QUOTING_STYLE LS_BLOCK_SIZE BLOCK_SIZE
  if stat -c %s . >/dev/null 2>&1; then set -- stat -c '%s %n'; else set -- ls -ln; fi
  if [ -z "$folder" ]; then
    find . ! -name . -prune -type f -exec "$@" {} +
  else
    find "./$folder" -type f -exec "$@" {} +
  fi
  exit 0
  ;;
delete)
  name=$1
  cd -- "$dir" && [ -f "$name" ] || exit "$not_found"
  rm -f -- "$name"
  ;;
remove-stale)
  # A temp file whose lock is free has no writer. Without flock on the remote, only temp files
  # untouched for a day are taken as stale.
  suffix=$1
  cd -- "$dir" 2>/dev/null || exit 0
  for f in .*"$suffix"; do
    [ -f "$f" ] || continue
    if command -v flock >/dev/null 2>&1; then
      flock -n "$f" true && rm -f -- "$f" && printf '%s\n' "$f"
    elif [ -n "$(find "$f" -mmin +1440 2>/dev/null)" ]; then
      rm -f -- "$f" && printf '%s\n' "$f"
    fi
  done
  exit 0
  ;;
*)
  echo "dockyard-remote: unknown operation $op" >&2
  exit 2
  ;;
esac
