#!/usr/bin/env bash
# Benchmarks fleeced against qemu-nbd, nbdkit and qemu-storage-daemon serving the
# same raw image in /dev/shm over Unix sockets, with fio's nbd engine, plus fio
# directly on the file as the local limit. With --format qcow2 the same against
# qemu-nbd and qemu-storage-daemon on a fully allocated qcow2 image and, for the
# allocwrite workloads, on an empty qcow2 overlay over the filled raw image. Prints a Markdown table of median IOPS and
# MiB/s with ratios and saves it (default build/bench/results.md).
# See tests/bench/README.md. Run with --help for options.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
# shellcheck source=lib.sh
. "$script_dir/lib.sh"   # install_cleanup, kill_and_reap, busy_percent, wait_for_idle, proc_cpu_ticks

# ---- settings (env first, flags override) ----------------------------------------
FLEECED=${FLEECED:-$repo_root/build/bin/fleeced}
FLEECED_ARGS=${FLEECED_ARGS:-}                  # extra args for `fleeced serve`, word-split
size=${BENCH_SIZE:-1G}
runtime=${BENCH_RUNTIME:-10}                    # seconds measured per sample
ramp=${BENCH_RAMP:-2}                           # seconds of warm-up per sample (not measured)
repeats=${BENCH_REPEATS:-3}
out=${BENCH_OUT:-$repo_root/build/bench/results.md}
servers=${BENCH_SERVERS:-fleeced,qemu-nbd,qemu-nbd-mt,nbdkit,qsd,local}
workloads=${BENCH_WORKLOADS:-seqread-1,seqread-4,seqwrite-1,seqwrite-4,randread-1,randread-4,randwrite-1,randwrite-4}
shm=${BENCH_SHM:-/dev/shm}
wait_idle=${BENCH_WAIT_IDLE:-0}                 # max seconds to wait for an idle box per sample
keep=${BENCH_KEEP:-0}                           # 1: keep the temp dir (image, logs)
start_timeout=${BENCH_START_TIMEOUT:-15}
syscalls=${BENCH_SYSCALLS:-0}                   # 1: extra pass counting server syscalls per request
format=${BENCH_FORMAT:-raw}                     # raw | qcow2: the format of the served image

usage() {
  cat <<EOF
Usage: tests/bench/run_bench.sh [options]

  --quick               smoke test: --runtime 2 --ramp 1 --repeats 1 --size 256M
  --servers LIST        comma list of: fleeced qemu-nbd qemu-nbd-mt nbdkit qsd local
                        (default: $servers)
  --workloads LIST      comma list of: seqread-N seqwrite-N randread-N randwrite-N,
                        allocwrite-N allocsparse-N (qcow2 only), N = connections
                        (default: all with N = 1 and 4; with qcow2 also
                        allocwrite-1 and allocsparse-1)
  --format raw|qcow2    the served image: raw, or a fully allocated qcow2 (64 KiB
                        clusters) converted from it; allocwrite-N writes 4 KiB into
                        every 64 KiB cluster of a fresh empty qcow2 overlay over the
                        filled raw image (every write copies 60 KiB from it),
                        allocsparse-N the same over an empty (sparse) raw file
                        (nbdkit and local are left out) [BENCH_FORMAT]
  --runtime S           measured seconds per sample (default $runtime)      [BENCH_RUNTIME]
  --ramp S              warm-up seconds per sample (default $ramp)          [BENCH_RAMP]
  --repeats N           samples per (workload, server); median reported (default $repeats) [BENCH_REPEATS]
  --size SIZE           image size, e.g. 1G, 256M (default $size)           [BENCH_SIZE]
  --output FILE         Markdown results file (default build/bench/results.md) [BENCH_OUT]
  --fleeced PATH        fleeced binary (default build/bin/fleeced)          [FLEECED]
  --wait-idle S         before each sample wait up to S seconds for the box to be idle
                        (other un-niced processes below 25% CPU) (default $wait_idle) [BENCH_WAIT_IDLE]
  --syscalls            after the timed rounds, one more sample per (workload, server) with
                        \`strace -c -f\` attached to the server: syscalls per request
                        (throughput of that pass is not reported; strace slows it)  [BENCH_SYSCALLS=1]
  --keep                keep the temp dir in $shm (image, server logs)      [BENCH_KEEP=1]
  -h, --help

Server keys: fleeced = build/bin/fleeced serve; qemu-nbd; qemu-nbd-mt = qemu-nbd with
MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ raised; nbdkit = nbdkit file plugin;
qsd = qemu-storage-daemon NBD export; local = fio on the image file itself.
Extra fleeced arguments: FLEECED_ARGS="...".
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) runtime=2; ramp=1; repeats=1; size=256M ;;
    --servers) servers=$2; shift ;;
    --servers=*) servers=${1#*=} ;;
    --workloads) workloads=$2; shift ;;
    --workloads=*) workloads=${1#*=} ;;
    --runtime) runtime=$2; shift ;;
    --runtime=*) runtime=${1#*=} ;;
    --ramp) ramp=$2; shift ;;
    --ramp=*) ramp=${1#*=} ;;
    --repeats) repeats=$2; shift ;;
    --repeats=*) repeats=${1#*=} ;;
    --size) size=$2; shift ;;
    --size=*) size=${1#*=} ;;
    --output) out=$2; shift ;;
    --output=*) out=${1#*=} ;;
    --fleeced) FLEECED=$2; shift ;;
    --fleeced=*) FLEECED=${1#*=} ;;
    --wait-idle) wait_idle=$2; shift ;;
    --wait-idle=*) wait_idle=${1#*=} ;;
    --format) format=$2; shift ;;
    --format=*) format=${1#*=} ;;
    --keep) keep=1 ;;
    --syscalls) syscalls=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run_bench: unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "run_bench: $*" >&2; exit 2; }
log() { echo "run_bench: $*" >&2; }

for v in runtime ramp repeats wait_idle start_timeout; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number of seconds/count, got '${!v}'"
done
[ "$runtime" -ge 1 ] || die "runtime must be >= 1"
[ "$repeats" -ge 1 ] || die "repeats must be >= 1"
size_clean=${size%iB}; size_clean=${size_clean%B}
size_bytes=$(numfmt --from=iec "$size_clean" 2>/dev/null) || die "bad --size '$size'"
mib=$((1024 * 1024))
if [ $((size_bytes % (4 * mib))) -ne 0 ] || [ "$size_bytes" -lt $((16 * mib)) ]; then
  die "--size must be a multiple of 4 MiB and at least 16 MiB"
fi
[[ $out = /* ]] || out=$PWD/$out

if [ "$syscalls" = 1 ]; then command -v strace >/dev/null || die "--syscalls needs strace"; fi
for tool in fio python3 numfmt timeout; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs the bench tools)"
done
fio --enghelp=nbd >/dev/null 2>&1 || die "this fio has no nbd ioengine"

case "$format" in
  raw) ;;
  qcow2)
    command -v qemu-img >/dev/null || die "--format qcow2 needs qemu-img"
    # Only the default lists change; explicit --servers/--workloads are taken as given.
    if [ -z "${BENCH_SERVERS:-}" ] && [ "$servers" = fleeced,qemu-nbd,qemu-nbd-mt,nbdkit,qsd,local ]; then
      servers=fleeced,qemu-nbd,qemu-nbd-mt,qsd
    fi
    if [ -z "${BENCH_WORKLOADS:-}" ] && [ "$workloads" = seqread-1,seqread-4,seqwrite-1,seqwrite-4,randread-1,randread-4,randwrite-1,randwrite-4 ]; then
      workloads=$workloads,allocwrite-1,allocsparse-1
    fi
    ;;
  *) die "--format must be raw or qcow2, got '$format'" ;;
esac
IFS=, read -r -a server_list <<<"$servers"
IFS=, read -r -a workload_list <<<"$workloads"

label_of() {
  case "$1" in
    fleeced) echo "fleeced" ;;
    qemu-nbd) echo "qemu-nbd" ;;
    qemu-nbd-mt) echo "qemu-nbd(malloc-tuned)" ;;
    nbdkit) echo "nbdkit" ;;
    qsd) echo "qemu-storage-daemon" ;;
    local) echo "local file" ;;
    *) return 1 ;;
  esac
}
binary_of() {
  case "$1" in
    fleeced) echo "$FLEECED" ;;
    qemu-nbd|qemu-nbd-mt) echo qemu-nbd ;;
    nbdkit) echo nbdkit ;;
    qsd) echo qemu-storage-daemon ;;
    local) echo fio ;;
  esac
}
for s in "${server_list[@]}"; do
  label_of "$s" >/dev/null || die "unknown server '$s'"
  if [ "$format" = qcow2 ] && { [ "$s" = nbdkit ] || [ "$s" = local ]; }; then
    die "server '$s' cannot serve qcow2 (use fleeced, qemu-nbd, qemu-nbd-mt, qsd)"
  fi
done
for w in "${workload_list[@]}"; do
  [[ $w =~ ^(seqread|seqwrite|randread|randwrite|allocwrite|allocsparse)-([0-9]+)$ ]] || die "unknown workload '$w'"
  if [[ $w = alloc* ]] && [ "$format" != qcow2 ]; then
    die "workload '$w' needs --format qcow2"
  fi
done

# ---- temp dir, cleanup -------------------------------------------------------------
if [ ! -d "$shm" ] || [ ! -w "$shm" ]; then die "$shm is not a writable directory"; fi
work=$(mktemp -d "$shm/fleece-bench.XXXXXX")
img=$work/image.raw
qimg=$work/image.qcow2          # --format qcow2: the fully allocated qcow2 image
overlay=$work/overlay.qcow2     # allocwrite: an empty overlay over $img, new per sample
serve_img=$img                  # what start_server serves, and as which format
serve_fmt=raw
server_pid=""
fio_pid=""
strace_pid=""
install_cleanup fio_pid strace_pid server_pid

# ---- machine noise -----------------------------------------------------------------
clk_tck=$(getconf CLK_TCK)

# ---- servers -------------------------------------------------------------------------
export_name=bench
uri_for() { echo "nbd+unix:///$export_name?socket=$1"; }

start_server() {  # key sock logfile -> sets server_pid; returns 1 if not ready
  local key=$1 sock=$2 logf=$3 i
  rm -f "$sock"
  case "$key" in
    fleeced)
      # shellcheck disable=SC2086
      "$FLEECED" serve "$serve_img" --name "$export_name" --listen "unix:$sock" --format "$serve_fmt" \
        $FLEECED_ARGS >"$logf" 2>&1 &
      ;;
    qemu-nbd)
      qemu-nbd -f "$serve_fmt" -t -e 16 -x "$export_name" -k "$sock" --cache=writeback --aio=threads \
        "$serve_img" >"$logf" 2>&1 &
      ;;
    qemu-nbd-mt)
      MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=268435456 \
        qemu-nbd -f "$serve_fmt" -t -e 16 -x "$export_name" -k "$sock" --cache=writeback --aio=threads \
        "$serve_img" >"$logf" 2>&1 &
      ;;
    nbdkit)
      nbdkit --unix "$sock" --foreground --exit-with-parent -e "$export_name" \
        file "$img" >"$logf" 2>&1 &
      ;;
    qsd)
      qemu-storage-daemon \
        --blockdev "driver=file,node-name=file0,filename=${serve_img//,/,,},aio=threads,cache.direct=off" \
        --blockdev "driver=$serve_fmt,node-name=disk0,file=file0" \
        --nbd-server "addr.type=unix,addr.path=${sock//,/,,}" \
        --export "type=nbd,id=exp0,node-name=disk0,name=$export_name,writable=on" \
        >"$logf" 2>&1 &
      ;;
  esac
  server_pid=$!
  for ((i = 0; i < start_timeout * 10; i++)); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      local rc=0
      wait "$server_pid" 2>/dev/null || rc=$?
      echo "($key exited with status $rc before serving)" >>"$logf"
      server_pid=""
      return 1
    fi
    if [ -S "$sock" ]; then
      if ! command -v nbdinfo >/dev/null; then sleep 0.2; return 0; fi
      if timeout 5 nbdinfo --size "$(uri_for "$sock")" >/dev/null 2>&1; then return 0; fi
    fi
    sleep 0.1
  done
  return 1
}
stop_server() {
  if [ -n "$server_pid" ]; then kill_and_reap "$server_pid"; fi
  server_pid=""
}

# ---- fio -----------------------------------------------------------------------------
local_engine=io_uring
fio_args_for() {  # workload server-key sock -> prints fio args, one per line
  local wl=$1 key=$2 sock=$3 kind jobs rw bs qd
  kind=${wl%-*}; jobs=${wl##*-}
  case "$kind" in
    seqread) rw="read"; bs=1M; qd=16 ;;
    seqwrite) rw="write"; bs=1M; qd=16 ;;
    randread) rw=randread; bs=4k; qd=32 ;;
    randwrite) rw=randwrite; bs=4k; qd=32 ;;
    allocwrite|allocsparse) rw=write:60k; bs=4k; qd=32 ;;  # one 4 KiB write per 64 KiB cluster
  esac
  printf '%s\n' --name="$wl" --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs="$jobs" \
    --group_reporting --output-format=json
  if [[ $kind = alloc* ]]; then
    # Not time based: every cluster of the overlay is written exactly once (a second
    # pass would no longer allocate). Each job allocates its own 1/N of the disk.
    local part=$(( size_bytes / jobs / mib * mib ))
    printf '%s\n' --size="$part" --io_size="$(( part / 16 ))" --offset_increment="$part"
  else
    printf '%s\n' --time_based --runtime="${runtime}s" --ramp_time="${ramp}s"
  fi
  if [ "$jobs" -gt 1 ] && [[ $kind = seq* ]]; then
    # Each sequential job streams through its own quarter (or 1/N) of the image.
    local part=$(( size_bytes / jobs / mib * mib ))
    printf '%s\n' --size="$part" --offset_increment="$part"
  fi
  if [[ $kind = rand* ]]; then printf '%s\n' --norandommap --randrepeat=0; fi
  if [ "$key" = local ]; then
    printf '%s\n' --filename="$img" --ioengine="$local_engine" --direct=0
  else
    printf '%s\n' --ioengine=nbd --uri="$(uri_for "$sock")"
  fi
}

# A time-based sample of several jobs is only valid if the jobs ran side by side. Each
# fio job starts its clock when its own connection is up; one that connects seconds
# late runs its measured part while the others are already done, with the server to
# itself, and the group's IOPS (the sum of each job's rate) come out inflated — seen
# with 4 jobs against nbdkit: 470k IOPS reported, in 10 s of wall clock instead of 6.
jobs_side_by_side() {  # workload json
  local wl=$1 json=$2 jobs elapsed
  jobs=${wl##*-}
  if [ "$jobs" -le 1 ] || [[ $wl = alloc* ]]; then return 0; fi
  elapsed=$(python3 "$script_dir/fio_table.py" --elapsed "$json" 2>/dev/null) || return 0
  [ "$elapsed" -le $((ramp + runtime + 2)) ]
}

# ---- preparation ---------------------------------------------------------------------
mkdir -p "$(dirname "$out")"
raw_dir=${out%.md}.raw
rm -rf "$raw_dir"
mkdir -p "$raw_dir"
samples=$raw_dir/samples.tsv
printf 'round\tworkload\tserver\tstatus\tjson\tserver_cpu_s\tmeasured_s\tbusy_before\n' >"$samples"

log "writing a $size image to $img"
dd if=/dev/urandom of="$img" bs=1M count=$((size_bytes / mib)) iflag=fullblock status=none
if [ "$format" = qcow2 ]; then
  log "converting it to a fully allocated qcow2 image $qimg (64 KiB clusters)"
  qemu-img convert -q -f raw -O qcow2 -o cluster_size=65536 "$img" "$qimg"
  serve_img=$qimg
  serve_fmt=qcow2
fi
main_img=$serve_img
# allocwrite samples each get a fresh empty overlay over the filled raw image.
# allocsparse samples get one over an empty (sparse) raw file instead.
prepare_image() {  # workload
  if [[ $1 = alloc* ]]; then
    local backing=$img
    if [[ $1 = allocsparse-* ]]; then
      backing=$work/sparse.raw
      [ -e "$backing" ] || qemu-img create -q -f raw "$backing" "$size_bytes"
    fi
    rm -f "$overlay"
    qemu-img create -q -f qcow2 -o cluster_size=65536 -b "$backing" -F raw "$overlay" "$size_bytes"
    serve_img=$overlay
  else
    serve_img=$main_img
  fi
}

if ! fio --name=probe --filename="$img" --ioengine=io_uring --rw=read --bs=4k --size=64k \
    --iodepth=4 --output=/dev/null >/dev/null 2>&1; then
  local_engine=psync
  log "io_uring unusable here; the local row uses psync (iodepth has no effect)"
fi

# Drop servers that are missing or do not come up, with a note for the results header.
notes=()
active=()
for s in "${server_list[@]}"; do
  bin=$(binary_of "$s")
  if ! command -v "$bin" >/dev/null 2>&1; then
    log "skipping $s: $bin not found"
    notes+=("skipped $(label_of "$s"): \`$bin\` not found")
    continue
  fi
  if [ "$s" != local ]; then
    if ! start_server "$s" "$work/preflight.sock" "$work/preflight-$s.log"; then
      stop_server
      log "skipping $s: it did not serve $(uri_for "$work/preflight.sock") within ${start_timeout}s; log:"
      tail -n 20 "$work/preflight-$s.log" >&2 || true
      notes+=("skipped $(label_of "$s"): did not start (see stderr of the run)")
      continue
    fi
    stop_server
  fi
  active+=("$s")
done
[ ${#active[@]} -gt 0 ] || die "no server left to measure"

# ---- versions for the header ---------------------------------------------------------
meta=$raw_dir/meta.tsv
{
  printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf 'nproc\t%s\n' "$(nproc)"
  printf 'cpu\t%s\n' "$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
  printf 'kernel\t%s\n' "$(uname -r)"
  printf 'mem\t%s\n' "$(awk '/^MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  printf 'fio\t%s\n' "$(fio --version 2>/dev/null)"
  command -v qemu-nbd >/dev/null && printf 'qemu-nbd\t%s\n' "$(qemu-nbd --version | head -n1)"
  command -v qemu-storage-daemon >/dev/null \
    && printf 'qemu-storage-daemon\t%s\n' "$(qemu-storage-daemon --version | head -n1)"
  command -v nbdkit >/dev/null && printf 'nbdkit\t%s\n' "$(nbdkit --version | head -n1)"
  if [[ " ${active[*]} " = *" fleeced "* ]]; then
    fv=$(timeout 5 "$FLEECED" --version 2>/dev/null | head -n1 || true)
    printf 'fleeced\t%s, %s, repo HEAD at run start %s\n' "$FLEECED" "${fv:-version unknown}" \
      "$(git -C "$repo_root" describe --always --dirty 2>/dev/null || echo '?')"
  fi
  if [ "$format" = qcow2 ]; then
    printf 'image\t%s qcow2 (64 KiB clusters, fully allocated, converted from a raw file of random data) in %s (%s); allocwrite: a fresh empty qcow2 overlay (64 KiB clusters) over that raw file per sample\n' \
      "$size" "$shm" "$(stat -f -c %T "$shm")"
  else
    printf 'image\t%s raw file in %s (%s), fully written before the run\n' \
      "$size" "$shm" "$(stat -f -c %T "$shm")"
  fi
  printf 'runtime\t%s\n' "$runtime"
  printf 'ramp\t%s\n' "$ramp"
  printf 'repeats\t%s\n' "$repeats"
  printf 'local_engine\t%s\n' "$local_engine"
  printf 'fleeced_args\t%s\n' "$FLEECED_ARGS"
  for n in "${notes[@]+"${notes[@]}"}"; do printf 'note\t%s\n' "$n"; done
} >"$meta"

# ---- measurements --------------------------------------------------------------------
n_active=${#active[@]}
total=$((repeats * ${#workload_list[@]} * n_active))
est=$(( total * (runtime + ramp + 2) ))
log "$total samples (${#workload_list[@]} workloads x $n_active servers x $repeats rounds), about $((est / 60)) min $((est % 60)) s"
failures=0
done_n=0
for ((round = 1; round <= repeats; round++)); do
  for wl in "${workload_list[@]}"; do
    # Rotate the server order every round so drifting noise hits every server alike.
    for ((k = 0; k < n_active; k++)); do
      s=${active[$(( (k + round - 1) % n_active ))]}
      done_n=$((done_n + 1))
      busy=$(wait_for_idle)
      json=$raw_dir/$wl.$s.r$round.json
      errf=$raw_dir/$wl.$s.r$round.stderr
      sock=$work/$s.sock
      for ((attempt = 1; ; attempt++)); do
        status=ok
        cpu_s=""
        measured=""
        prepare_image "$wl"
        if [ "$s" != local ] && ! start_server "$s" "$sock" "$raw_dir/$wl.$s.r$round.server.log"; then
          status=server-start-failed
        else
          mapfile -t fargs < <(fio_args_for "$wl" "$s" "$sock")
          timeout -k 5 $((runtime + ramp + 300)) fio "${fargs[@]}" --output="$json" >/dev/null 2>"$errf" &
          fio_pid=$!
          c0=0; t0=0
          if [ -n "$server_pid" ]; then
            # allocwrite has no warm-up: its server CPU is counted from the start.
            [[ $wl = alloc* ]] || sleep "$ramp"
            c0=$(proc_cpu_ticks "$server_pid"); t0=$(date +%s%N)
          fi
          frc=0
          wait "$fio_pid" || frc=$?
          fio_pid=""
          if [ -n "$server_pid" ]; then
            c1=$(proc_cpu_ticks "$server_pid"); t1=$(date +%s%N)
            cpu_s=$(awk -v a="$c0" -v b="$c1" -v h="$clk_tck" 'BEGIN{printf "%.3f", (b-a)/h}')
            measured=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
            if ! kill -0 "$server_pid" 2>/dev/null; then status=server-died; fi
          fi
          stop_server
          if [ "$frc" -ne 0 ] && [ "$status" = ok ]; then status=fio-exit-$frc; fi
        fi
        if [ "$status" = ok ] && ! jobs_side_by_side "$wl" "$json"; then status=jobs-apart; fi
        if [ "$status" != jobs-apart ] || [ "$attempt" -ge 3 ]; then break; fi
        log "$wl on $(label_of "$s"): its fio jobs did not run side by side (fio took" \
          "$(python3 "$script_dir/fio_table.py" --elapsed "$json") s): sample taken again"
      done
      if [ "$status" != ok ]; then
        failures=$((failures + 1))
        log "FAILED $wl on $s (round $round): $status"
        tail -n 5 "$errf" >&2 2>/dev/null || true
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$wl" "$s" "$status" "$json" \
        "$cpu_s" "$measured" "$busy" >>"$samples"
      log "[$done_n/$total] round $round $wl $(label_of "$s"): $status$( \
        python3 "$script_dir/fio_table.py" --one "$json" 2>/dev/null | sed 's/^/, /')"
    done
  done
done

# ---- optional pass: syscalls per request ----------------------------------------------
syscall_samples=$raw_dir/syscalls.tsv
printf 'workload\tserver\tjson\tstrace\n' >"$syscall_samples"
if [ "$syscalls" = 1 ]; then
  for wl in "${workload_list[@]}"; do
    for s in "${active[@]}"; do
      [ "$s" = local ] && continue
      json=$raw_dir/$wl.$s.strace.json
      sfile=$raw_dir/$wl.$s.strace.txt
      sock=$work/$s.sock
      prepare_image "$wl"
      if ! start_server "$s" "$sock" "$raw_dir/$wl.$s.strace.server.log"; then
        log "syscalls: $s did not start for $wl"
        continue
      fi
      # strace watches the whole fio run (no ramp), so every request fio counts is in it.
      strace -c -f -q -p "$server_pid" -o "$sfile" 2>/dev/null &
      strace_pid=$!
      sleep 0.5
      mapfile -t fargs < <(fio_args_for "$wl" "$s" "$sock")
      timeout -k 5 $((runtime + 60)) fio "${fargs[@]}" --ramp_time=0 --output="$json" \
        >/dev/null 2>"$raw_dir/$wl.$s.strace.stderr" &
      fio_pid=$!
      wait "$fio_pid" || true
      fio_pid=""
      kill -INT "$strace_pid" 2>/dev/null || true
      wait "$strace_pid" 2>/dev/null || true
      strace_pid=""
      stop_server
      printf '%s\t%s\t%s\t%s\n' "$wl" "$s" "$json" "$sfile" >>"$syscall_samples"
      log "syscalls: $wl $(label_of "$s") done"
    done
  done
fi

python3 "$script_dir/fio_table.py" --samples "$samples" --meta "$meta" --syscalls "$syscall_samples" \
  --servers "$(IFS=,; echo "${active[*]}")" --workloads "$workloads" >"$out.tmp"
mv "$out.tmp" "$out"
cat "$out"
log "results: $out (raw fio JSON and samples.tsv in $raw_dir)"
if [ "$failures" -gt 0 ]; then
  log "$failures sample(s) failed"
  exit 1
fi
