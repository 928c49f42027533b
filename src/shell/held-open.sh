# dockyard logs: list the files the container's processes hold open, so dockyard can tell a
# process still writing to (or reading, like `tail -f`) a log file it has just rotated.
# POSIX sh; runs by `docker exec` in the app container as the log directory's owner, so it sees
# the processes that user may see. Takes no arguments and reads no file content.
# Output: NUL-terminated triples "<pid>" "<command name>" "<open file>".
for fd in /proc/[0-9]*/fd/*; do
  target=$(readlink "$fd" 2>/dev/null) || continue
  case "$target" in /*) ;; *) continue ;; esac
  pid=${fd#/proc/}
  pid=${pid%%/*}
  comm=
  IFS= read -r comm <"/proc/$pid/comm" 2>/dev/null
  printf '%s\0%s\0%s\0' "$pid" "$comm" "$target"
done
exit 0
