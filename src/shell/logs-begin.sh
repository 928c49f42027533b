# dockyard logs: take the log directory's lock, rotate the due log files, list the rotated ones.
# POSIX sh (busybox ash, dash, bash as sh). Runs in a helper as the log directory's owner, so it
# can do nothing the app could not do itself; still, it never writes through a symlink.
#
# Usage: logs-begin.sh DIR OWNER STALE_OWNER ROTATE STAMP NOW MIN_SIZE MAX_AGE METHOD [GLOB...]
#   OWNER        this run ("<host> <pid> <start> <run> <since>"), written into the lock
#   STALE_OWNER  a dead run's OWNER whose lock may be taken over, or ""
#   ROTATE       1 to rotate, 0 to only list rotated files, plan to take no lock, change
#                nothing and report the files that are due ("DUE <size> <name>")
#   STAMP        suffix for this rotation, e.g. 20261128T023000.123Z
#   NOW          seconds since the epoch
#   MIN_SIZE     rotate files of at least this many bytes, or ""
#   MAX_AGE      rotate files last rotated at least this many seconds ago, or ""
#   METHOD       rename | copytruncate
#   GLOB         file name patterns (checked by dockyard: letters, digits, . _ - * ? [ ])
# Output: NUL-terminated records "LOCKED <owner>", "ROTATED <name>", "FAILED <name>: <why>",
# "SKIPPED <name>: <why>", "DUE <size> <name>", "FILE <size> <name>". Exit 75 when another run
# holds the lock.
set -u
dir=$1 owner=$2 stale=$3 rotate=$4 stamp=$5 now=$6 min_size=$7 max_age=$8 method=$9
shift 9
S=.dockyard

record() { printf '%s\0' "$*"; }

# fault NAME: in test builds dockyard passes DOCKYARD_FAULT; a named point stops here until the
# test releases it.
fault() {
  case ",${DOCKYARD_FAULT:-}," in *",$1,"*) ;; *) return 0 ;; esac
  echo "dockyard-fault $1" >&2
  : >"/tmp/.dockyard-fault-reached-$1" 2>/dev/null
  while [ ! -e /tmp/.dockyard-fault-release ]; do sleep 0.1; done
}

fail() {
  echo "dockyard logs: $*" >&2
  exit "${2:-1}"
}

cd -P -- "$dir" 2>/dev/null || fail "no directory $dir in the volume" 3
fault logs-begin
if [ -L "$S" ] || { [ -e "$S" ] && [ ! -d "$S" ]; }; then
  fail "$dir/$S is a symlink or not a directory; dockyard keeps its state there and will not follow it (remove it)" 4
fi
plan=0
[ "$rotate" = plan ] && plan=1 && rotate=1
[ "$plan" = 1 ] || [ -d "$S" ] || mkdir "$S" || fail "cannot create $dir/$S"
set -C # state files are created, never opened through something already there

# read_state FILE: prints FILE's first line if it is a regular file (a FIFO planted there would
# block any read; a symlink could point anywhere), else nothing.
read_state() {
  [ -f "$1" ] && [ ! -L "$1" ] || return 0
  IFS= read -r _line <"$1" 2>/dev/null && printf '%s' "$_line"
}

# write_state NAME VALUE: replaces $S/NAME (a symlink planted there is replaced, not followed).
write_state() {
  tmp="$S/.tmp-$$-$(date +%s)-$1"
  rm -f -- "$tmp"
  printf '%s\n' "$2" >"$tmp" && mv -f -- "$tmp" "$S/$1"
}

if [ "$plan" = 0 ]; then
  if [ -n "$stale" ] && [ -d "$S/lock" ] && [ ! -L "$S/lock" ]; then
    held=$(read_state "$S/lock/owner")
    [ "$held" = "$stale" ] && rm -rf -- "$S/lock"
  fi
  if ! mkdir "$S/lock" 2>/dev/null; then
    held=
    [ -d "$S/lock" ] && [ ! -L "$S/lock" ] && held=$(read_state "$S/lock/owner")
    record "LOCKED $held"
    exit 75
  fi
  printf '%s\n' "$owner" >"$S/lock/owner" || fail "cannot write $dir/$S/lock/owner"
fi

# rotated NAME: whether NAME is a rotated file (<name>.<YYYYmmddTHHMMSS.mmmZ>[.<n>]).
rotated() {
  case "$1" in
    *.[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9].[0-9][0-9][0-9]Z) return 0 ;;
    *.[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9].[0-9][0-9][0-9]Z.[0-9]*) return 0 ;;
  esac
  return 1
}

number() { case "$1" in '' | *[!0-9]*) return 1 ;; esac; }

if [ "$rotate" = 1 ]; then
  for glob in "$@"; do
    for f in $glob; do
      case "$f" in .* | */*) continue ;; esac
      rotated "$f" && continue
      [ -e "./$f" ] || [ -L "./$f" ] || continue
      if [ -L "./$f" ] || [ ! -f "./$f" ]; then
        record "SKIPPED $f: not a regular file (a symlink or something else); dockyard rotates only regular files"
        continue
      fi
      [ -s "./$f" ] || continue
      size=$(wc -c <"./$f") && size=$((size + 0)) || continue
      due=1
      if [ -n "$min_size" ] || [ -n "$max_age" ]; then
        due=0
        if [ -n "$min_size" ] && [ "$size" -ge "$min_size" ]; then due=1; fi
        if [ -n "$max_age" ]; then
          # The recorded time is the app's to tamper with: only plain digits are used.
          last=$(read_state "$S/last-$f")
          if ! number "$last"; then
            last=$now
            [ "$plan" = 1 ] || write_state "last-$f" "$now"
          fi
          [ $((now - last)) -ge "$max_age" ] && due=1
        fi
      fi
      [ "$due" = 1 ] || continue
      if [ "$plan" = 1 ]; then
        record "DUE $size $f"
        continue
      fi
      t="$f.$stamp"
      n=1
      while [ -e "./$t" ] || [ -L "./$t" ]; do
        t="$f.$stamp.$n"
        n=$((n + 1))
      done
      if [ "$method" = copytruncate ]; then
        # Copy, copy again what grew meanwhile, then truncate: lines written between the second
        # copy and the truncation are lost (the documented window).
        cp -p -- "./$f" "./$t" && s=$(wc -c <"./$t") && s=$((s + 0)) &&
          tail -c "+$((s + 1))" -- "./$f" >>"./$t" && : >|"./$f"
      else
        mv -- "./$f" "./$t"
      fi
      if [ $? -ne 0 ]; then
        record "FAILED $f: could not rotate it (see the helper's messages)"
        continue
      fi
      write_state "last-$f" "$now" || record "FAILED $f: rotated, but $S/last-$f could not be written"
      record "ROTATED $t"
    done
  done
fi

for f in * .[!.]* ..?*; do
  rotated "$f" || continue
  [ -f "./$f" ] && [ ! -L "./$f" ] || continue
  size=$(wc -c <"./$f") && record "FILE $((size + 0)) $f"
done
exit 0
