# Shell helpers shared by the bench scripts in tests/bench (sourced, not run):
# stopping a process, cleaning up on exit, how busy the box is, waiting for it to calm
# down, a process's CPU time and the median of a list. Each script keeps its own
# settings; wait_for_idle reads the caller's $wait_idle (seconds, 0 = do not wait), and
# the cleanup reads its $work, $keep and log().

kill_and_reap() {  # pid: TERM, wait up to 10 s, then KILL; always reaps it
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "bench: pid $pid ignored SIGTERM for 10 s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

bench_pid_vars=()
bench_cleanup() {  # the EXIT trap: stops the listed children, removes $work, keeps the status
  local rc=$? v
  # A second signal (timeout(1) signals the script and then its whole group) must not
  # cut the cleanup short.
  trap - EXIT
  trap '' INT TERM HUP
  for v in "${bench_pid_vars[@]}"; do
    if [ -n "${!v}" ]; then kill_and_reap "${!v}"; fi
  done
  if [ "${keep:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
  exit "$rc"
}

install_cleanup() {  # names of the variables holding child pids, in the order to stop them
  bench_pid_vars=("$@")
  trap bench_cleanup EXIT
  trap 'log "interrupted"; exit 130' INT
  trap 'log "terminated"; exit 143' TERM HUP
}

cpu_busy_total() {  # prints "busy total" jiffies from /proc/stat; niced work is not busy
  awk '/^cpu /{t=0; for(i=2;i<=NF;i++) t+=$i; print t-$3-$5-$6, t; exit}' /proc/stat
}

busy_percent() {  # un-niced busy % of the whole box over 0.5 s (call it while idle yourself)
  local b0 t0 b1 t1
  read -r b0 t0 < <(cpu_busy_total)
  sleep 0.5
  read -r b1 t1 < <(cpu_busy_total)
  if [ $((t1 - t0)) -le 0 ]; then echo 0; else echo $((100 * (b1 - b0) / (t1 - t0))); fi
}

wait_for_idle() {  # waits up to $wait_idle s until other processes use < 25%; prints the last busy %
  local busy deadline=$((SECONDS + ${wait_idle:-0}))
  busy=$(busy_percent)
  while [ "$busy" -ge 25 ] && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 1
    busy=$(busy_percent)
  done
  echo "$busy"
}

proc_cpu_ticks() {  # pid -> utime+stime of the whole process (all threads), in clock ticks
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  stat=${stat##*) }
  awk '{print $12 + $13}' <<<"$stat"
}

median() {  # numbers on stdin, one a line -> their median (empty input: nothing)
  sort -g | awk '{a[NR]=$1} END{if (NR) print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'
}
