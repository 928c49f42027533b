# dockyard: the swap step of a restore, and the recovery of an interrupted one. POSIX sh (busybox
# ash, dash, bash as sh); runs as root in a helper container that has the target's volumes.
#
# Usage: restore.sh MODE [MOUNT_ROOT...] [-- STAGED_FILE LIVE_FILE ...]
#   commit   every MOUNT_ROOT was staged completely: set the recorded times, mark each ready, move
#            the staged single files into place, then swap each path and clean up
#   forward  finish an interrupted restore: each work dir is ready or further along
#   discard  remove the work dirs (and staged single files) of a restore that never became ready
#
# Each MOUNT_ROOT holds a work dir .dockyard-restore (root, mode 0700) with:
#   0-journal    "dockyard-restore 1", then "path <k> <uid> <gid> <mode> <mtime> <rel>" per path
#                and "skip <k> <name>" per nested mount point that stays in place; <rel> and
#                <name> are octal escapes (\ooo per byte), validated, then decoded with printf
#   0-phase      staging | ready | aside <k> | in <k> | meta <k> | swapped
#   0-fixups-<k> "<seconds> <name>" per entry whose time the engine could not set
#   new-<k>/     the staged contents of path k;  old-<k>/  its previous contents
# Phases only move forward and every step can run again after a crash, so `forward` always ends
# with exactly the restored tree. Output: "PHASE <root> <phase>" and "FILE <path>" lines.
# POSIX sh has no local variables: each function's own variables carry its own prefix (_p_, _s_,
# _m_, _f_, _e_, _r_, _x_), so none can overwrite a caller's.
set -u
W=.dockyard-restore
BATCH=200

fail() {
  echo "dockyard restore: $*" >&2
  exit 1
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
  case "$1" in '' | - | *[!0-9-]* | ?*-*) fail "bad time '$1' in $root" ;; esac
}

# enter ROOT: cd into the mount root and check that the work dir is dockyard's own (a directory,
# not a symlink, owned by root, mode 0700: nothing the app could have made).
enter() {
  root=$1
  cd -P -- "$root" || fail "cannot enter $root"
  [ -d "$W" ] && [ ! -L "$W" ] || fail "$root/$W is missing or not a directory"
  set -- $(ls -ldn -- "$W")
  [ "$1" = drwx------ ] && [ "$3" = 0 ] ||
    fail "$root/$W is not dockyard's work directory (owner $3, mode $1); refusing to touch it"
}

journal() {
  [ -f "$W/0-journal" ] || fail "$root/$W has no journal"
  IFS= read -r head <"$W/0-journal" || head=
  [ "$head" = "dockyard-restore 1" ] || fail "$root/$W/0-journal: unknown format"
}

phase() {
  IFS= read -r p <"$W/0-phase" 2>/dev/null || p=staging
  echo "$p"
}

set_phase() {
  printf '%s\n' "$1" >"$W/0-phase.tmp" && mv -f "$W/0-phase.tmp" "$W/0-phase" ||
    fail "cannot record phase $1 in $root"
  echo "PHASE $root $1"
}

# paths: prints "k uid gid mode mtime rel" for each path of the journal, checked.
paths() {
  while read -r _p_tag _p_k _p_uid _p_gid _p_mode _p_mtime _p_rel; do
    [ "$_p_tag" = path ] || continue
    number "$_p_k"; number "$_p_uid"; number "$_p_gid"; number "$_p_mode"; signed "$_p_mtime"
    echo "$_p_k $_p_uid $_p_gid $_p_mode $_p_mtime ${_p_rel:-}"
  done <"$W/0-journal"
}

# is_skip K NAME: whether NAME (a top-level entry of path K) is a nested mount point.
is_skip() {
  while read -r _s_tag _s_k _s_name; do
    [ "$_s_tag" = skip ] && [ "$_s_k" = "$1" ] || continue
    decode "$_s_name"
    [ "$decoded" = "$2" ] && return 0
  done <"$W/0-journal"
  return 1
}

# move_all SRC DST K LIVE: moves every entry of SRC into DST, in batches. On the live side
# (LIVE=1) the work dir and nested mount points stay where they are.
move_all() {
  _m_src=$1 _m_dst=$2 _m_k=$3 _m_live=$4
  set --
  for _m_f in "$_m_src"/* "$_m_src"/.[!.]* "$_m_src"/..?*; do
    [ -e "$_m_f" ] || [ -L "$_m_f" ] || continue
    if [ "$_m_live" = 1 ]; then
      _m_n=${_m_f##*/}
      [ "$_m_src" = . ] && [ "$_m_n" = "$W" ] && continue
      is_skip "$_m_k" "$_m_n" && continue
    fi
    set -- "$@" "$_m_f"
    if [ $# -ge $BATCH ]; then
      mv -f -- "$@" "$_m_dst/" || return 1
      set --
    fi
  done
  [ $# -eq 0 ] || mv -f -- "$@" "$_m_dst/"
}

fixups() {
  paths >"$W/0-paths.tmp" || exit 1
  while read -r _f_k _f_uid _f_gid _f_mode _f_mtime _f_rel; do
    [ -f "$W/0-fixups-$_f_k" ] || continue
    while read -r _f_secs _f_name; do
      signed "$_f_secs"
      decode "$_f_name"
      touch -h -d "@$_f_secs" -- "$W/new-$_f_k/$decoded" ||
        fail "$root: cannot set the time of $decoded"
    done <"$W/0-fixups-$_f_k"
  done <"$W/0-paths.tmp"
}

# swap: every path of this work dir, from the recorded phase on.
swap() {
  p=$(phase)
  case "$p" in
    ready | aside\ * | in\ * | meta\ *) ;;
    swapped) return 0 ;;
    *) fail "$root: the restore is in phase '$p', not ready to swap" ;;
  esac
  paths >"$W/0-paths.tmp" || exit 1
  while read -r _e_k _e_uid _e_gid _e_mode _e_mtime _e_rel; do
    case "$p" in
      ready | "aside $_e_k" | "in $_e_k" | "meta $_e_k") ;;
      *) continue ;; # done before the interruption
    esac
    if [ -z "$_e_rel" ]; then
      _e_t=.
    else
      decode "$_e_rel"
      _e_t="./$decoded"
    fi
    if [ ! -e "$_e_t" ] && [ ! -L "$_e_t" ]; then
      mkdir -p -- "$_e_t" || fail "$root: cannot create $_e_t"
    fi
    [ -d "$_e_t" ] && [ ! -L "$_e_t" ] || fail "$root: $_e_t is not a directory"
    [ -d "$W/new-$_e_k" ] || [ "$p" = "meta $_e_k" ] || fail "$root: $W/new-$_e_k is missing"
    if [ "$p" = ready ] || [ "$p" = "aside $_e_k" ]; then
      set_phase "aside $_e_k"
      mkdir -p "$W/old-$_e_k" && move_all "$_e_t" "$W/old-$_e_k" "$_e_k" 1 ||
        fail "$root: cannot move the old contents of $_e_t aside"
      p="in $_e_k"
    fi
    if [ "$p" = "in $_e_k" ]; then
      set_phase "in $_e_k"
      move_all "$W/new-$_e_k" "$_e_t" "$_e_k" 0 ||
        fail "$root: cannot move the restored contents into $_e_t"
    fi
    set_phase "meta $_e_k"
    chown "$_e_uid:$_e_gid" "$_e_t" && chmod "$_e_mode" "$_e_t" && touch -d "@$_e_mtime" "$_e_t" ||
      fail "$root: cannot set the owner, mode or time of $_e_t"
    p=ready
  done <"$W/0-paths.tmp"
  set_phase swapped
}

do_ready() {
  journal
  p=$(phase)
  [ "$p" = staging ] || fail "$root: expected phase staging, found '$p'"
  fixups && set_phase ready
}

do_swap() {
  journal
  swap
}

do_clean() {
  [ "$(phase)" = swapped ] || fail "$root: not swapped"
  # Removing the work dir touches the mount root: give it back its restored time afterwards.
  _c_mtime=$(paths | while read -r _c_k _c_u _c_g _c_m _c_t _c_rel; do
    [ -z "$_c_rel" ] && echo "$_c_t"
  done)
  cd -P -- "$root" && rm -rf -- "$W" || fail "$root: cannot remove $W"
  if [ -n "$_c_mtime" ]; then touch -d "@$_c_mtime" . || fail "$root: cannot set its time"; fi
  echo "PHASE $root done"
}

do_discard() {
  p=$(phase)
  case "$p" in
    staging | ready) ;;
    *) fail "$root: the swap already began (phase '$p'); it can only be finished" ;;
  esac
  cd -P -- "$root" && rm -rf -- "$W" || fail "$root: cannot remove $W"
  echo "PHASE $root discarded"
}

# each_root FN ARGS...: runs FN inside each mount root (the arguments before "--").
each_root() {
  _r_fn=$1
  shift
  for _r_root in "$@"; do
    [ "$_r_root" = -- ] && break
    (enter "$_r_root" && "$_r_fn") || exit 1
  done
}

# each_file ACTION ARGS...: for each STAGED LIVE pair after "--", moves STAGED over LIVE (or, for
# discard, removes STAGED). Single files are renamed in one step, so each is old or new.
each_file() {
  _x_action=$1
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do shift; done
  [ $# -gt 0 ] && shift
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
  commit)
    each_root do_ready "$@"
    each_file move "$@"
    ;;
  forward) each_file move "$@" ;;
  discard)
    each_root do_discard "$@"
    each_file discard "$@"
    exit 0
    ;;
  *) fail "usage: restore.sh commit|forward|discard MOUNT_ROOT... [-- STAGED LIVE ...]" ;;
esac
each_root do_swap "$@"
each_root do_clean "$@"
exit 0
