#!/usr/bin/env bash
# Dirty-bitmap benchmarks (issue 4), run on demand, not in CI; about 3-5 minutes.
#
# (a) Block status: a 1 TiB sparse qcow2 image in /dev/shm whose persistent bitmap has a
#     few thousand scattered dirty granules (recorded by qemu-io discards, so the image
#     holds no data), read with `nbdinfo --map=qemu:dirty-bitmap:NAME` through fleeced
#     and through `qemu-nbd -r -B NAME`, alternating; medians of several runs and their
#     ratio (target: fleeced well under a second). The two maps must be identical.
# (b) Random-write overhead of crash-safe tracking: fio (nbd engine, as run_bench.sh)
#     random 4 KiB writes at queue depth 32 through `fleeced serve` over a fully
#     allocated qcow2 image in /dev/shm,
#       nobitmap  the image without bitmaps,
#       warm      the same image with an enabled persistent bitmap already all dirty,
#     rounds alternated, medians, overhead % (target < 5%). For information also
#       cold      the same image with a clean enabled bitmap (a fresh copy per sample): every
#                 first write to a granule waits for a durable bitmap write (random
#                 writes, measured from the first request, no ramp), and
#       stride    one 4 KiB write into every granule once (each request dirties a new
#                 granule), against the same stride on the image without bitmaps.
#
# Usage: tests/bench/bitmap_bench.sh [--quick] [--fleeced PATH] [--rounds N] [--runtime S]
#        [--size SIZE] [--granules N] [--parts a,b] [--wait-idle S]
#        (env: FLEECED, BENCH_ROUNDS, BENCH_RUNTIME, BENCH_SIZE, BENCH_GRANULES,
#        BENCH_PARTS, BENCH_WAIT_IDLE). The box is shared: compare the rows of one run.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
# shellcheck source=lib.sh
. "$script_dir/lib.sh"   # install_cleanup, busy_percent, wait_for_idle, proc_cpu_ticks, median

FLEECED=${FLEECED:-$repo_root/build/bin/fleeced}
rounds=${BENCH_ROUNDS:-5}           # samples per variant (medians)
runtime=${BENCH_RUNTIME:-5}         # fio seconds per sample
ramp=${BENCH_RAMP:-1}               # fio warm-up seconds (not for cold)
size=${BENCH_SIZE:-1G}              # image of part (b)
granules=${BENCH_GRANULES:-4000}    # dirty granules of part (a)
map_runs=${BENCH_MAP_RUNS:-5}       # nbdinfo --map runs per server in part (a)
shm=${BENCH_SHM:-/dev/shm}
parts=${BENCH_PARTS:-a,b}
wait_idle=${BENCH_WAIT_IDLE:-0}     # before each sample wait up to S s for an idle box

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) rounds=3; runtime=3; map_runs=3 ;;
    --fleeced) FLEECED=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --runtime) runtime=$2; shift ;;
    --size) size=$2; shift ;;
    --granules) granules=$2; shift ;;
    --parts) parts=$2; shift ;;
    --wait-idle) wait_idle=$2; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "bitmap_bench: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "bitmap_bench: $*" >&2; exit 2; }
log() { echo "bitmap_bench: $*" >&2; }
for tool in qemu-img qemu-io qemu-nbd nbdinfo fio python3 numfmt; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh)"
done
[ -x "$FLEECED" ] || die "no fleeced at $FLEECED (build it, or --fleeced PATH)"
size_bytes=$(numfmt --from=iec "${size%iB}")

work=$(mktemp -d "$shm/fleece-bitmap-bench.XXXXXX")
server_pid=""
install_cleanup server_pid

start() {  # logfile command... : starts a server on $work/s.sock, waits until it serves
  local logf=$1 i
  shift
  rm -f "$work/s.sock"
  "$@" >"$logf" 2>&1 &
  server_pid=$!
  for ((i = 0; i < 150; i++)); do
    kill -0 "$server_pid" 2>/dev/null || { cat "$logf" >&2; die "server exited: $*"; }
    if [ -S "$work/s.sock" ] && nbdinfo --size "nbd+unix:///d?socket=$work/s.sock" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  die "server did not start: $*"
}
stop() {
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=""
}
uri="nbd+unix:///d?socket=$work/s.sock"
fleeced_config() {  # image bitmap-or-empty read-only(true|false) -> config file path
  local cfg=$work/fleeced.yaml
  {
    printf 'listen:\n  - unix: %s\nnodes:\n  - node-name: d\n    driver: qcow2\n' "$work/s.sock"
    printf '    read-only: %s\n    file: { driver: file, filename: "%s" }\n' "$3" "$1"
    printf 'exports:\n  - name: d\n    node: d\n    writable: %s\n' "$([ "$3" = true ] && echo false || echo true)"
    if [ -n "$2" ]; then printf '    bitmaps: [%s]\n' "$2"; fi
  } >"$cfg"
  echo "$cfg"
}

echo "# dirty-bitmap benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), kernel $(uname -r)"
echo "- fleeced: $FLEECED ($(git -C "$repo_root" describe --always --dirty 2>/dev/null || echo '?')); $(qemu-nbd --version | head -n1); $(fio --version)"
echo

# ---- (a) block status of a 1 TiB image ------------------------------------------------
if [[ ,$parts, = *,a,* ]]; then
  big=$work/big.qcow2
  qemu-img create -q -f qcow2 "$big" 1T
  qemu-img bitmap --add "$big" b
  # Scattered granules: a discard marks the bitmap and allocates nothing.
  mapfile -t cmds < <(python3 - "$granules" <<'EOF'
import random, sys
rng = random.Random(4)
n = int(sys.argv[1])
for g in rng.sample(range((1 << 40) // 65536), n):
    off = g * 65536 + rng.randrange(0, 65536 - 4096, 512)
    print(f"-c\ndiscard {off} 4096")
EOF
  )
  qemu-io -f qcow2 "${cmds[@]}" "$big" >/dev/null
  log "(a) 1 TiB image with $granules dirty granules ready ($(du -h "$big" | cut -f1) on disk)"
  cfg=$(fleeced_config "$big" b true)
  f_times=(); q_times=()
  for ((r = 1; r <= map_runs; r++)); do
    for s in fleeced qemu-nbd; do
      wait_for_idle >/dev/null
      if [ $s = fleeced ]; then
        start "$work/a-fleeced.log" "$FLEECED" --config "$cfg"
      else
        start "$work/a-qemu-nbd.log" qemu-nbd -r -t -f qcow2 -B b -x d -k "$work/s.sock" "$big"
      fi
      t0=$(date +%s%N)
      nbdinfo --json --map=qemu:dirty-bitmap:b "$uri" >"$work/map.$s"
      t1=$(date +%s%N)
      stop
      t=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", (b-a)/1e9}')
      if [ $s = fleeced ]; then f_times+=("$t"); else q_times+=("$t"); fi
    done
    python3 - "$work/map.fleeced" "$work/map.qemu-nbd" "$granules" <<'EOF' || die "(a) the maps differ"
import json, sys
def runs(path):
    out = []
    for e in json.load(open(path)):
        if out and out[-1][2] == e["type"] and out[-1][0] + out[-1][1] == e["offset"]:
            out[-1][1] += e["length"]
        else:
            out.append([e["offset"], e["length"], e["type"]])
    return out
f, q = runs(sys.argv[1]), runs(sys.argv[2])
dirty = sum(r[1] for r in f if r[2] & 1)
if f != q or dirty != int(sys.argv[3]) * 65536:
    sys.exit(f"fleeced: {len(f)} runs, {dirty} dirty bytes; qemu-nbd: {len(q)} runs")
EOF
  done
  dirty=$(python3 -c 'import json,sys; print(sum(1 for e in json.load(open(sys.argv[1])) if e["type"] & 1))' "$work/map.fleeced")
  fm=$(printf '%s\n' "${f_times[@]}" | median)
  qm=$(printf '%s\n' "${q_times[@]}" | median)
  echo "## (a) block status, 1 TiB qcow2, $granules dirty granules (64 KiB), nbdinfo --map=qemu:dirty-bitmap:b"
  echo
  echo "| server | median of $map_runs | runs (s) |"
  echo "|---|--:|---|"
  echo "| fleeced | ${fm} s | ${f_times[*]} |"
  echo "| qemu-nbd -B | ${qm} s | ${q_times[*]} |"
  echo
  echo "fleeced / qemu-nbd time: $(awk -v a="$fm" -v b="$qm" 'BEGIN{printf "%.2f", a/b}')x; $dirty dirty runs, identical maps"
  echo
  rm -f "$big"
fi

# ---- (b) random-write overhead ------------------------------------------------------------
clk_tck=$(getconf CLK_TCK)
fio_run() {  # ramp-seconds fio-args... -> prints "IOPS server-CPU-us-per-request"
  local ramp_s=$1 c0 c1 fpid
  shift
  fio --name=w --ioengine=nbd --uri="$uri" --bs=4k --iodepth=32 --numjobs=1 \
    --group_reporting --output-format=json --output="$work/fio.json" "$@" >/dev/null 2>"$work/fio.err" &
  fpid=$!
  sleep "$ramp_s"
  c0=$(proc_cpu_ticks "$server_pid")
  wait "$fpid" || { cat "$work/fio.err" >&2; die "fio failed"; }
  c1=$(proc_cpu_ticks "$server_pid")
  python3 -c 'import json,sys
w = json.load(open(sys.argv[1]))["jobs"][0]["write"]
print(round(w["iops"]), round((int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4]) * 1e6 / max(w["total_ios"], 1), 2))' \
    "$work/fio.json" "$c0" "$c1" "$clk_tck"
}
serve_rw() {  # image
  start "$work/b-fleeced.log" "$FLEECED" serve "$1" --name d --listen "unix:$work/s.sock" --format qcow2
}
bitmap_count() {  # image bitmap -> dirty bytes as qemu-nbd reads them
  local q
  start "$work/q.log" qemu-nbd -r -t -f qcow2 -B "$2" -x d -k "$work/s.sock" "$1"
  q=$(nbdinfo --json --map=qemu:dirty-bitmap:"$2" "$uri" | python3 -c \
    'import json,sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["type"] & 1))')
  stop
  echo "$q"
}

if [[ ,$parts, = *,b,* ]]; then
  base=$work/base.qcow2
  qemu-img create -q -f qcow2 "$base" "$size_bytes"
  step=$((64 * 1024 * 1024))
  cmds=()
  for ((off = 0; off < size_bytes; off += step)); do cmds+=(-c "write -P 0x5a $off $step"); done
  qemu-io -f qcow2 "${cmds[@]}" "$base" >/dev/null        # every cluster allocated
  cp "$base" "$work/nobitmap.qcow2"
  cp "$base" "$work/warm.qcow2"
  qemu-img bitmap --add "$work/warm.qcow2" b
  cmds=()
  for ((off = 0; off < size_bytes; off += step)); do cmds+=(-c "write -P 0x5b $off $step"); done
  qemu-io -f qcow2 "${cmds[@]}" "$work/warm.qcow2" >/dev/null  # and every granule dirty
  [ "$(bitmap_count "$work/warm.qcow2" b)" = "$size_bytes" ] || die "(b) warm bitmap not all dirty"
  log "(b) $size images ready; $rounds rounds of ${runtime}s samples"
  declare -A iops_s=() cpu_s=()
  ratios=""
  variants=(nobitmap warm cold)
  for ((r = 1; r <= rounds; r++)); do
    declare -A this=()
    for ((k = 0; k < ${#variants[@]}; k++)); do
      v=${variants[$(( (k + r - 1) % ${#variants[@]} ))]}
      img=$work/$v.qcow2
      if [ "$v" = cold ]; then
        cp "$base" "$img"
        qemu-img bitmap --add "$img" b
      fi
      wait_for_idle >/dev/null
      serve_rw "$img"
      if [ "$v" = cold ]; then  # from the very first write: no ramp
        read -r iops cpu < <(fio_run 0 --rw=randwrite --norandommap --randrepeat=0 \
          --time_based --runtime="${runtime}s")
      else
        read -r iops cpu < <(fio_run "$ramp" --rw=randwrite --norandommap --randrepeat=0 \
          --time_based --runtime="${runtime}s" --ramp_time="${ramp}s")
      fi
      stop
      [ -n "${cpu:-}" ] || die "(b) fio on $v failed"
      iops_s[$v]+="$iops "; cpu_s[$v]+="$cpu "; this[$v]=$iops
      log "round $r $v: $iops IOPS, $cpu us server CPU per request"
    done
    ratios+="$(awk -v a="${this[nobitmap]}" -v b="${this[warm]}" 'BEGIN{printf "%.4f", b/a}') "
    # Stride: one 4 KiB write per 64 KiB granule, each one the first in its granule.
    for v in stride-nobitmap stride-cold; do
      img=$work/stride.qcow2
      cp "$base" "$img"
      [ "$v" = stride-cold ] && qemu-img bitmap --add "$img" b
      wait_for_idle >/dev/null
      serve_rw "$img"
      read -r iops cpu < <(fio_run 0 --rw=write:60k --size="$size_bytes" --io_size=$((size_bytes / 16)))
      stop
      [ -n "${cpu:-}" ] || die "(b) fio on $v failed"
      if [ "$v" = stride-cold ]; then
        c=$(bitmap_count "$img" b)
        [ "$c" = "$size_bytes" ] || die "(b) stride left $c of $size_bytes bytes clean"
      fi
      iops_s[$v]+="$iops "; cpu_s[$v]+="$cpu "
      log "round $r $v: $iops IOPS, $cpu us server CPU per request"
    done
  done
  rm -f "$work"/*.qcow2
  med() { tr ' ' '\n' <<<"$1" | grep . | median; }
  pct() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%+.1f%%", (b-a)/a*100}'; }
  row() {  # label variant baseline-variant
    local i c
    i=$(med "${iops_s[$2]}"); c=$(med "${cpu_s[$2]}")
    if [ -n "$3" ]; then
      echo "| $1 | $i | $(pct "$(med "${iops_s[$3]}")" "$i") | $c | $(pct "$(med "${cpu_s[$3]}")" "$c") | ${iops_s[$2]}|"
    else
      echo "| $1 | $i | | $c | | ${iops_s[$2]}|"
    fi
  }
  echo "## (b) fio 4 KiB writes qd32, 1 connection, $size fully allocated qcow2, fleeced serve"
  echo
  echo "| variant | median IOPS ($rounds rounds) | vs no bitmap | server CPU µs/request | vs no bitmap | IOPS samples |"
  echo "|---|--:|--:|--:|--:|---|"
  row "random, no bitmap" nobitmap ""
  row "random, warm: enabled persistent bitmap, all dirty" warm nobitmap
  row "random, cold: clean bitmap, ${runtime}s from the first write" cold nobitmap
  row "stride (one 4 KiB write per 64 KiB), no bitmap" stride-nobitmap ""
  row "stride, clean bitmap: every write dirties a new granule" stride-cold stride-nobitmap
  echo
  wr=$(med "$ratios")
  echo "warm tracking overhead (target < 5%): IOPS $(awk -v r="$wr" 'BEGIN{printf "%+.1f%%", (r-1)*100}') (median of the per-round warm / no-bitmap ratios: $ratios); server CPU per request $(pct "$(med "${cpu_s[nobitmap]}")" "$(med "${cpu_s[warm]}")")"
fi
