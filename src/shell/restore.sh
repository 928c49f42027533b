# dockyard: the swap step of a restore, and what finishes, undoes or cleans up after one. POSIX sh
# (busybox ash, dash, bash as sh); runs as root in a helper container that has the target's
# volumes and no host directory besides them.
#
# Usage: restore.sh MODE ARGS...
#   commit   [ROOT PHASE SPEC]...   apply the time fix-ups, then swap every path of each ROOT from
#                                   PHASE on; prints "PHASE <root> swapped" for each
#   rollback [ROOT PHASE SPEC]...   put each path's old contents back (a restore given up);
#                                   phases "undo K" and then "rolledback"
#   discard  [ROOT PHASE]...        remove work dirs whose swap never began
#   clean    [ROOT MTIME]...        remove swapped work dirs, then give ROOT time MTIME ("-": none)
#   files    move|discard [STAGED LIVE]...   single files, in a helper that has only their
#                                   directories: rename each staged file over its live one
#
# Nothing this script acts on is read from a volume. SPEC is a file in the helper's own root
# file system, written there by dockyard from its journal on the host: "path K UID GID MODE
# MTIME REL", "skip K NAME" (a nested mount point that stays) and "fixup K SECS NAME" (a time the
# engine could not set) lines, REL and NAME octal escapes (\ooo per byte), checked, then decoded
# with printf. PHASE is what ROOT/.dockyard-restore/0-phase said when dockyard read it:
# staging | aside K | in K | meta K | swapped. The work dir (root, mode 0700) holds new-K/ (the
# staged contents of path K), old-K/ (its previous contents) and 0-phase, rewritten as the swap
# moves on, so every step can run again after a crash and `commit` always ends with exactly the
# restored tree. POSIX sh has no local variables: each function's own variables carry its own
# prefix (_s_, _m_, _f_, _e_, _b_, _r_, _x_), so none can overwrite a caller's.
set -u
set -C # files are created, never opened through something already there
W=.dockyard-restore
LOGS=.dockyard # dockyard's log state: it stays with the live container
BATCH=200
nl='
'

fail() {
  echo "dockyard restore: $*" >&2
  exit 1
}

# fault NAME: in test builds dockyard passes DOCKYARD_FAULT; a named point stops here until the
# test releases it ("NAME"), or fails this step ("NAME=fail").
fault() {
  case ",${DOCKYARD_FAULT:-}," in
    *",$1=fail,"*) echo "dockyard-fault $1" >&2 && return 1 ;;
    *",$1,"*) ;;
    *) return 0 ;;
  esac
  echo "dockyard-fault $1" >&2
  : >|"/.dockyard-fault-reached-$1"
  while [ ! -e /.dockyard-fault-release ]; do sleep 0.1; done
}

# decode ESCAPES: sets $decoded (its only variable) to the bytes the \ooo escapes stand for.
decode() {
  case "$1" in *[!\\0-7]*) fail "bad name escape in the journal of $root" ;; esac
  decoded=$(printf "$1"; printf x)
  decoded=${decoded%x}
}

number() {
  case "$1" in '' | *[!0-9]*) fail "bad number '$1' in the journal of $root" ;; esac
}

signed() {
  case "$1" in '' | - | *[!0-9-]* | ?*-*) fail "bad time '$1' in the journal of $root" ;; esac
}

# physical DIR: prints DIR's physical path (cd -P resolves every symlink on the way).
physical() {
  (cd -P -- "$1" && pwd -P && printf x)
}

# enter ROOT: cd into the mount root; sets $root and $phys, its physical path.
enter() {
  root=$1
  cd -P -- "$root" || fail "cannot enter $root"
  phys=$(physical .) || fail "cannot enter $root"
  phys=${phys%"${nl}x"}
}

# ours: fails unless the work dir is dockyard's own: a directory, not a symlink, owned by root,
# mode 0700 (nothing an unprivileged app could have made).
ours() {
  [ -d "$W" ] && [ ! -L "$W" ] || fail "$root/$W is missing or not a directory"
  set -- $(ls -ldn -- "$W")
  [ "$1" = drwx------ ] && [ "$3" = 0 ] ||
    fail "$root/$W is not dockyard's work directory (owner $3, mode $1); refusing to touch it"
}

set_phase() {
  rm -f -- "$W/0-phase.tmp" && printf '%s\n' "$1" >"$W/0-phase.tmp" &&
    mv -f -- "$W/0-phase.tmp" "$W/0-phase" || fail "cannot record phase $1 in $root"
  echo "PHASE $root $1"
}

# target K REL: sets $_t to path K's directory (./REL, or . for the mount root), creating it if
# missing, and fails unless it is a real directory inside the mount: no symlink on the way.
target() {
  if [ -z "$2" ]; then
    _t=.
    return 0
  fi
  decode "$2"
  _t="./$decoded"
  if [ ! -e "$_t" ] && [ ! -L "$_t" ]; then
    mkdir -p -- "$_t" || fail "$root: cannot create $_t"
  fi
  [ -d "$_t" ] && [ ! -L "$_t" ] || fail "$root: $_t is not a directory"
  _p=$(physical "$_t") || fail "$root: cannot enter $_t"
  [ "${_p%"${nl}x"}" = "${phys%/}/$decoded" ] ||
    fail "$root: $_t passes through a symlink; refusing to restore through it"
}

# is_skip K NAME: whether NAME (a top-level entry of path K) is a nested mount point.
is_skip() {
  while read -r _s_tag _s_k _s_name; do
    [ "$_s_tag" = skip ] && [ "$_s_k" = "$1" ] || continue
    decode "$_s_name"
    [ "$decoded" = "$2" ] && return 0
  done <"$spec"
  return 1
}

# move_all SRC DST K LIVE: moves every entry of SRC into DST, in batches. On the live side
# (LIVE=1) the work dir, the log state and nested mount points stay where they are.
move_all() {
  _m_src=$1 _m_dst=$2 _m_k=$3 _m_live=$4
  set --
  for _m_f in "$_m_src"/* "$_m_src"/.[!.]* "$_m_src"/..?*; do
    [ -e "$_m_f" ] || [ -L "$_m_f" ] || continue
    if [ "$_m_live" = 1 ]; then
      _m_n=${_m_f##*/}
      [ "$_m_src" = . ] && [ "$_m_n" = "$W" ] && continue
      [ "$_m_n" = "$LOGS" ] && continue
      is_skip "$_m_k" "$_m_n" && continue
    fi
    set -- "$@" "$_m_f"
    if [ $# -ge $BATCH ]; then
      mv -f -- "$@" "$_m_dst/" || return 1
      fault swap-batch || return 1
      set --
    fi
  done
  [ $# -eq 0 ] || mv -f -- "$@" "$_m_dst/"
}

# fixups: sets the times the engine could not (before 1970, after 2242) on staged entries.
fixups() {
  while read -r _f_tag _f_k _f_secs _f_name; do
    [ "$_f_tag" = fixup ] || continue
    number "$_f_k"; signed "$_f_secs"
    decode "$_f_name"
    case "/$decoded/" in */../* | */./* | //*) fail "$root: bad fix-up name" ;; esac
    [ -d "$W/new-$_f_k" ] || continue # already swapped in
    touch -h -d "@$_f_secs" -- "$W/new-$_f_k/$decoded" ||
      fail "$root: cannot set the time of $decoded"
  done <"$spec"
}

# swap: every path of this work dir, from phase $p on.
swap() {
  case "$p" in
    staging | aside\ * | in\ * | meta\ *) ;;
    swapped) return 0 ;;
    *) fail "$root: unknown phase '$p'" ;;
  esac
  [ "$p" = staging ] && { fixups; p=ready; }
  fault swap-begin || fail "$root: stopped at swap-begin"
  # Paths in the journal's order; the phase names the one that was under way.
  grep '^path ' "$spec" >|"$spec.paths" || fail "no paths for $root"
  while read -r _e_tag _e_k _e_uid _e_gid _e_mode _e_mtime _e_rel; do
    number "$_e_k"; number "$_e_uid"; number "$_e_gid"; number "$_e_mode"; signed "$_e_mtime"
    case "$p" in
      ready | "aside $_e_k" | "in $_e_k" | "meta $_e_k") ;;
      *) continue ;; # done before the interruption
    esac
    target "$_e_k" "${_e_rel:-}"
    [ -d "$W/new-$_e_k" ] || [ "$p" = "meta $_e_k" ] || fail "$root: $W/new-$_e_k is missing"
    if [ "$p" = ready ] || [ "$p" = "aside $_e_k" ]; then
      set_phase "aside $_e_k"
      mkdir -p "$W/old-$_e_k" && move_all "$_t" "$W/old-$_e_k" "$_e_k" 1 ||
        fail "$root: cannot move the old contents of $_t aside"
      p="in $_e_k"
    fi
    if [ "$p" = "in $_e_k" ]; then
      set_phase "in $_e_k"
      fault swap-in && move_all "$W/new-$_e_k" "$_t" "$_e_k" 0 ||
        fail "$root: cannot move the restored contents into $_t"
    fi
    set_phase "meta $_e_k"
    chown "$_e_uid:$_e_gid" "$_t" && chmod "$_e_mode" "$_t" && touch -d "@$_e_mtime" "$_t" ||
      fail "$root: cannot set the owner, mode or time of $_t"
    p=ready
  done <"$spec.paths"
  set_phase swapped
  fault swap-swapped || fail "$root: stopped at swap-swapped"
}

# unswap: puts each path's old contents back, last path first: what is live now (part of the
# restore) goes to back-K, then old-K moves in. Run again after a crash, it ends the same way.
unswap() {
  case "$p" in
    staging) return 0 ;;
    aside\ * | in\ * | meta\ * | swapped | undo\ * | rolledback) ;;
    *) fail "$root: unknown phase '$p'" ;;
  esac
  [ "$p" = rolledback ] && return 0
  grep '^path ' "$spec" | sort -r -n -k2 >|"$spec.paths" || fail "no paths for $root"
  while read -r _b_tag _b_k _b_uid _b_gid _b_mode _b_mtime _b_rel; do
    number "$_b_k"
    [ -d "$W/old-$_b_k" ] || continue # never moved aside
    target "$_b_k" "${_b_rel:-}"
    # Cut short while moving aside, the path holds only old entries: nothing of the restore to
    # move out of the way first.
    if [ "$p" != "aside $_b_k" ] && [ "$p" != "undo $_b_k" ]; then
      mkdir -p "$W/back-$_b_k" && move_all "$_t" "$W/back-$_b_k" "$_b_k" 1 ||
        fail "$root: cannot move the restored contents of $_t out of the way"
      set_phase "undo $_b_k"
    fi
    move_all "$W/old-$_b_k" "$_t" "$_b_k" 0 && rmdir -- "$W/old-$_b_k" ||
      fail "$root: cannot put the old contents of $_t back"
  done <"$spec.paths"
  set_phase rolledback
}

# each_root FN N ARGS...: runs FN inside each mount root, its arguments taken N at a time
# (ROOT first); sets $p and $spec from them.
each_root() {
  _r_fn=$1 _r_n=$2
  shift 2
  while [ $# -ge "$_r_n" ]; do
    (
      enter "$1"
      p=${2:-}
      spec=${3:-/dev/null}
      "$_r_fn"
    ) || exit 1
    shift "$_r_n"
  done
}

do_commit() { ours && swap; }
do_rollback() { ours && unswap; }

do_discard() {
  [ -e "$W" ] || [ -L "$W" ] || return 0
  ours
  case "$p" in
    staging) ;;
    *) fail "$root: the swap already began (phase '$p'); it can only be finished" ;;
  esac
  rm -rf -- "$W" || fail "$root: cannot remove $W"
  echo "PHASE $root discarded"
}

do_clean() {
  [ -e "$W" ] || [ -L "$W" ] || return 0
  ours
  rm -rf -- "$W" || fail "$root: cannot remove $W"
  # Removing the work dir touched the mount root: give it back its restored time.
  if [ "$p" != - ]; then
    signed "$p"
    touch -d "@$p" . || fail "$root: cannot set its time"
  fi
  echo "PHASE $root done"
}

# files ACTION [STAGED LIVE]...: moves each STAGED over LIVE (or, for discard, removes STAGED).
# Single files are renamed in one step, so each is old or new.
files() {
  _x_action=$1
  shift
  while [ $# -ge 2 ]; do
    _x_staged=$1 _x_live=$2
    shift 2
    [ -e "$_x_staged" ] || [ -L "$_x_staged" ] || continue
    [ -f "$_x_staged" ] && [ ! -L "$_x_staged" ] || fail "$_x_staged is not a staged file"
    if [ "$_x_action" = discard ]; then
      rm -f -- "$_x_staged" || fail "cannot remove $_x_staged"
    else
      mv -f -- "$_x_staged" "$_x_live" || fail "cannot move $_x_staged to $_x_live"
    fi
    echo "FILE $_x_live"
  done
}

mode=${1:-}
[ $# -gt 0 ] && shift
case "$mode" in
  commit) each_root do_commit 3 "$@" ;;
  rollback) each_root do_rollback 3 "$@" ;;
  discard) each_root do_discard 2 "$@" ;;
  clean) each_root do_clean 2 "$@" ;;
  files)
    case "${1:-}" in move | discard) ;; *) fail "usage: restore.sh files move|discard ..." ;; esac
    files "$@"
    ;;
  *) fail "usage: restore.sh commit|rollback|discard|clean|files ..." ;;
esac
exit 0
