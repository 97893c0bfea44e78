#!/usr/bin/env bash
# Fleecing benchmarks, run on demand, not in CI (about 10 minutes on an idle box; --quick
# about 1).
#
# (1) Random 4 KiB write IOPS (fio's nbd engine, queue depth 32, 1 and 4 connections) on
#     the live export of one raw disk in /dev/shm, side by side:
#       fleeced          `fleeced --config` exporting the disk, no fleece
#       fleeced+fleece   the same after `fleecectl fleece start` (overlay in /dev/shm)
#       qsd              qemu-storage-daemon exporting the disk (file + raw nodes)
#       qsd+cbw(qcow2)   qemu-storage-daemon's image-fleecing setup: a copy-before-write
#                        filter over the disk with a fresh qcow2 fleecing target (64 KiB
#                        clusters) in /dev/shm, the filter exported writable, a
#                        snapshot-access node over it exported read-only
#       qsd+cbw(raw)     the same with a sparse raw fleecing target
#     Every sample starts its own server (so every fleece is fresh) and runs two fio jobs:
#       fresh   WRITES random 4 KiB writes (default: a quarter of the disk's 64 KiB
#               clusters), each 4 KiB block at most once: every one copies old data
#               first in fleeced (4 KiB copy granules), and most are the first write
#               into their 64 KiB cluster, which qsd's filter copies whole; the pages
#               fleeced copied are counted
#       steady  then random 4 KiB writes for a few seconds inside the first 128 MiB,
#               after a warm-up that copies every granule there (no copies measured)
#     Rounds interleave the variants (the order rotates); medians are reported with the
#     ratios the fleecing issue sets targets for.
# (2) Incremental pull: fleeced serving the same disk, a bitmap `b` recording while new
#     data is written into 5% of the granules through the live export (scattered single
#     granules, or clustered 1 MiB runs), then `fleece start --bitmap b`, and the time of
#       full (nbdcopy)        nbdcopy of the whole fleece export into a file in /dev/shm
#       full (libnbd)         incremental_pull.py --full: the whole export, same client
#       incremental           incremental_pull.py --bitmap b: block status of
#                             qemu:dirty-bitmap:b, then only its dirty extents
#     each round on a fresh fleece (the previous one stopped with rollback, so `b` keeps
#     the same granules), medians and their ratio against the dirty fraction.
# (3) With --perf: one more fleeced+fleece sample (1 connection) with `perf record -g` on
#     fleeced during the fresh job; where fleeced's CPU time goes goes into the report.
#
# Usage: tests/bench/fleece_bench.sh [--quick] [--fleeced PATH] [--fleecectl PATH]
#        [--size SIZE] [--writes N] [--rounds N] [--conns LIST] [--variants LIST]
#        [--pull-rounds N] [--layouts LIST] [--parts iops,pull] [--wait-idle S]
#        [--output FILE] [--perf] [--keep]
#        (env: FLEECED, FLEECECTL, BENCH_SIZE, BENCH_WRITES, BENCH_ROUNDS, BENCH_CONNS,
#        BENCH_VARIANTS, BENCH_PULL_ROUNDS, BENCH_LAYOUTS, BENCH_PARTS, BENCH_WAIT_IDLE,
#        BENCH_OUT). See tests/bench/README.md. Compare the rows of one run only.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
# shellcheck source=lib.sh
. "$script_dir/lib.sh"   # install_cleanup, kill_and_reap, wait_for_idle, proc_cpu_ticks, median

FLEECED=${FLEECED:-$repo_root/build/bin/fleeced}
FLEECECTL=${FLEECECTL:-}
size=${BENCH_SIZE:-4G}
writes=${BENCH_WRITES:-}                  # fresh-job writes; default: granules / 4
rounds=${BENCH_ROUNDS:-5}
conns=${BENCH_CONNS:-1,4}
variants=${BENCH_VARIANTS:-fleeced,fleeced-fleece,qsd,qsd-cbw-qcow2,qsd-cbw-raw}
steady_region=$((128 * 1024 * 1024))
steady_ramp=${BENCH_STEADY_RAMP:-1}
steady_runtime=${BENCH_STEADY_RUNTIME:-2}
pull_rounds=${BENCH_PULL_ROUNDS:-3}
dirty_fraction=${BENCH_DIRTY_FRACTION:-0.05}
layouts=${BENCH_LAYOUTS:-scattered,clustered}
parts=${BENCH_PARTS:-iops,pull}
wait_idle=${BENCH_WAIT_IDLE:-0}           # before each sample wait up to S s for an idle box
out=${BENCH_OUT:-$repo_root/build/bench/fleece.md}
shm=${BENCH_SHM:-/dev/shm}
keep=${BENCH_KEEP:-0}
perf_pass=${BENCH_PERF:-0}                # 1: a perf profile of fleeced's fresh job
server_timeout=${BENCH_SERVER_TIMEOUT:-300}  # seconds any one server may live

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) size=1G; rounds=1; conns=1; pull_rounds=1; steady_runtime=1
             variants=fleeced,fleeced-fleece,qsd,qsd-cbw-qcow2 ;;
    --fleeced) FLEECED=$2; shift ;;
    --fleecectl) FLEECECTL=$2; shift ;;
    --size) size=$2; shift ;;
    --writes) writes=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --conns) conns=$2; shift ;;
    --variants) variants=$2; shift ;;
    --pull-rounds) pull_rounds=$2; shift ;;
    --layouts) layouts=$2; shift ;;
    --parts) parts=$2; shift ;;
    --wait-idle) wait_idle=$2; shift ;;
    --output) out=$2; shift ;;
    --keep) keep=1 ;;
    --perf) perf_pass=1 ;;
    -h|--help) sed -n '2,41p' "$0"; exit 0 ;;
    *) echo "fleece_bench: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "fleece_bench: $*" >&2; exit 2; }
log() { echo "fleece_bench: $*" >&2; }

FLEECECTL=${FLEECECTL:-$(dirname "$FLEECED")/fleecectl}
[ -x "$FLEECED" ] || die "no fleeced at $FLEECED (build it, or --fleeced PATH)"
[ -x "$FLEECECTL" ] || die "no fleecectl at $FLEECECTL (--fleecectl PATH)"
for tool in fio nbdinfo nbdcopy qemu-img numfmt timeout python3; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs the bench tools)"
done
/usr/bin/python3 -c 'import nbd' 2>/dev/null || die "/usr/bin/python3 has no nbd module (python3-libnbd)"
fio --enghelp=nbd >/dev/null 2>&1 || die "this fio has no nbd ioengine"
for v in rounds pull_rounds wait_idle steady_ramp steady_runtime; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
size_bytes=$(numfmt --from=iec "${size%iB}") || die "bad --size '$size'"
granule=65536
mib=$((1024 * 1024))
[ $((size_bytes % (64 * mib))) -eq 0 ] && [ "$size_bytes" -ge $((256 * mib)) ] \
  || die "--size must be a multiple of 64 MiB and at least 256 MiB"
granules=$((size_bytes / granule))
writes=${writes:-$((granules / 4))}
IFS=, read -r -a conn_list <<<"$conns"
IFS=, read -r -a variant_list <<<"$variants"
IFS=, read -r -a layout_list <<<"$layouts"
for j in "${conn_list[@]}"; do
  [[ $j =~ ^[1-9][0-9]*$ ]] && [ $((writes % j)) -eq 0 ] || die "bad connection count '$j' (must divide --writes $writes)"
done
for v in "${variant_list[@]}"; do
  case "$v" in fleeced|fleeced-fleece|qsd|qsd-cbw-qcow2|qsd-cbw-raw) ;; *) die "unknown variant '$v'" ;; esac
  if [[ $v = qsd* ]] && ! command -v qemu-storage-daemon >/dev/null; then
    die "variant $v needs qemu-storage-daemon (package qemu-system-common)"
  fi
done
for l in "${layout_list[@]}"; do
  case "$l" in scattered|clustered) ;; *) die "unknown layout '$l'" ;; esac
done
[[ $out = /* ]] || out=$PWD/$out
if [ "$perf_pass" = 1 ]; then command -v perf >/dev/null || die "--perf needs perf (apt-get install linux-perf)"; fi

# ---- temp dir, cleanup ------------------------------------------------------------------
work=$(mktemp -d "$shm/fleece-fleece-bench.XXXXXX")
img=$work/disk.raw
mkdir -p "$work/overlay"
server_pid=""
fio_pid=""
perf_pid=""
install_cleanup fio_pid perf_pid server_pid

mkdir -p "$(dirname "$out")"
raw_dir=${out%.md}.raw
rm -rf "$raw_dir"
mkdir -p "$raw_dir"
samples=$raw_dir/samples.tsv
pulls=$raw_dir/pulls.tsv
printf 'round\tconns\tvariant\tjob\tstatus\tiops\tios\tcpu_us_per_io\tcopied_pages\tbusy\n' >"$samples"
printf 'layout\tround\tmethod\tseconds\tbytes\tdirty_bytes\n' >"$pulls"
clk_tck=$(getconf CLK_TCK)

# ---- servers (each under `timeout`, on Unix sockets in $work only) -----------------------
sock=$work/nbd.sock
ctl=$work/ctl.sock
uri_of() { echo "nbd+unix:///$1?socket=$sock"; }
cfg=$work/fleeced.yaml
cat >"$cfg" <<EOF
listen:
  - unix: $sock
control:
  unix: $ctl
nodes:
  - node-name: disk0
    driver: raw
    file: { driver: file, filename: "$img" }
exports:
  - { name: disk0, node: disk0, writable: true }
fleecing:
  overlay-dir: $work/overlay
EOF
fctl() { "$FLEECECTL" --socket "$ctl" --timeout 30 "$@"; }

server_main_pid() {  # the server under `timeout` (for its CPU time); timeout's own pid if none yet
  local c
  c=$(cat "/proc/$server_pid/task/$server_pid/children" 2>/dev/null || true)
  echo "${c%% *}" | grep -E '^[0-9]+$' || echo "$server_pid"
}

start_server() {  # variant logfile -> 0 when the live export "disk0" answers
  local v=$1 logf=$2 i tgt
  rm -f "$sock" "$ctl"
  case "$v" in
    fleeced|fleeced-fleece)
      timeout -k 5 "$server_timeout" "$FLEECED" --config "$cfg" >"$logf" 2>&1 &
      ;;
    qsd)
      timeout -k 5 "$server_timeout" qemu-storage-daemon \
        --blockdev "driver=file,node-name=file0,filename=$img,aio=threads,cache.direct=off" \
        --blockdev "driver=raw,node-name=disk0,file=file0" \
        --nbd-server "addr.type=unix,addr.path=$sock" \
        --export "type=nbd,id=live,node-name=disk0,name=disk0,writable=on" >"$logf" 2>&1 &
      ;;
    qsd-cbw-qcow2|qsd-cbw-raw)
      # QEMU's image-fleecing setup: copy-before-write over the disk, a fresh target,
      # the filter exported writable and a snapshot-access node exported read-only.
      rm -f "$work"/target.*
      if [ "$v" = qsd-cbw-qcow2 ]; then
        tgt=$work/target.qcow2
        qemu-img create -q -f qcow2 -o cluster_size=65536 "$tgt" "$size_bytes"
      else
        tgt=$work/target.raw
        truncate -s "$size_bytes" "$tgt"
      fi
      timeout -k 5 "$server_timeout" qemu-storage-daemon \
        --blockdev "driver=file,node-name=file0,filename=$img,aio=threads,cache.direct=off" \
        --blockdev "driver=raw,node-name=disk0,file=file0" \
        --blockdev "driver=file,node-name=tgt-file,filename=$tgt,aio=threads,cache.direct=off" \
        --blockdev "driver=${v#qsd-cbw-},node-name=tgt,file=tgt-file" \
        --blockdev "driver=copy-before-write,node-name=cbw,file=disk0,target=tgt" \
        --blockdev "driver=snapshot-access,node-name=snap,file=cbw" \
        --nbd-server "addr.type=unix,addr.path=$sock" \
        --export "type=nbd,id=live,node-name=cbw,name=disk0,writable=on" \
        --export "type=nbd,id=view,node-name=snap,name=disk0-fleece" >"$logf" 2>&1 &
      ;;
  esac
  server_pid=$!
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      wait "$server_pid" 2>/dev/null || true
      server_pid=""
      return 1
    fi
    if [ -S "$sock" ] && { [[ $v != fleeced* ]] || [ -S "$ctl" ]; } \
        && timeout 5 nbdinfo --size "$(uri_of disk0)" >/dev/null 2>&1; then
      if [ "$v" = fleeced-fleece ]; then
        fctl fleece start disk0 --id bench >>"$logf" 2>&1 || return 1
      fi
      return 0
    fi
    sleep 0.1
  done
  return 1
}
stop_server() {
  if [ -n "$server_pid" ]; then kill_and_reap "$server_pid"; fi
  server_pid=""
}

# ---- fio ----------------------------------------------------------------------------------
fio_job() {  # job conns json -> runs fio on the live export; prints "iops ios cpu_us_per_io"
  local job=$1 j=$2 json=$3 spid c0 c1 rc=0
  local args=(--name="$job" --ioengine=nbd --uri="$(uri_of disk0)" --rw=randwrite --bs=4k
    --iodepth=32 --numjobs="$j" --group_reporting --output-format=json --output="$json")
  if [ "$job" = fresh ]; then
    # Each connection writes in its own 1/j of the disk; the offsets are the same in
    # every sample (fio's default seed), and no 4 KiB block twice (fio's random map).
    args+=(--size=$((size_bytes / j)) --offset_increment=$((size_bytes / j))
      --io_size=$((writes / j * 4096)))
  else
    args+=(--size=$((steady_region / j)) --offset_increment=$((steady_region / j))
      --norandommap --randrepeat=0 --time_based --runtime="${steady_runtime}s"
      --ramp_time="${steady_ramp}s")
  fi
  spid=$(server_main_pid)
  timeout -k 5 120 fio "${args[@]}" >/dev/null 2>"$json.stderr" &
  fio_pid=$!
  [ "$job" = fresh ] || sleep "$steady_ramp"
  c0=$(proc_cpu_ticks "$spid")
  wait "$fio_pid" || rc=$?
  fio_pid=""
  c1=$(proc_cpu_ticks "$spid")
  [ "$rc" -eq 0 ] || return 1
  python3 - "$json" "$c0" "$c1" "$clk_tck" <<'EOF'
import json, sys
text = open(sys.argv[1], errors="replace").read()
w = json.loads(text[text.index("{"):])["jobs"][0]["write"]
ios = max(w["total_ios"], 1)
cpu_us = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4]) * 1e6 / ios
print(round(w["iops"]), w["total_ios"], round(cpu_us, 1))
EOF
}

fleece_copied_pages() {  # 4 KiB pages of old data fleece "bench" copied so far
  fctl --json fleece list | python3 -c '
import json, sys
f = [x for x in json.load(sys.stdin) if x["id"] == "bench"]
print(f[0]["copied-bytes"] // 4096 if f else "")'
}

# ---- header -----------------------------------------------------------------------------
fv=$(timeout 5 "$FLEECED" --version 2>/dev/null | head -n1 || true)
header() {
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), $(awk '/^MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
  echo "- tools: $(fio --version); $(qemu-storage-daemon --version 2>/dev/null | head -n1 || echo 'no qemu-storage-daemon'); $(nbdcopy --version 2>/dev/null | head -n1); libnbd $(/usr/bin/python3 -c 'import nbd; print(nbd.NBD().get_version())')"
  echo "- fleeced: $FLEECED (${fv:-version unknown}), repo HEAD at run start $(git -C "$repo_root" describe --always --dirty 2>/dev/null || echo '?')"
  echo "- disk: $size raw file of random data in $shm ($(stat -f -c %T "$shm")), $granules granules of 64 KiB; every server on a Unix socket, one at a time"
}

log "writing a $size image of random data to $img"
dd if=/dev/urandom of="$img" bs=1M count=$((size_bytes / mib)) iflag=fullblock status=none

report=$raw_dir/report.md
{
  echo "# fleecing benchmarks (tests/bench/fleece_bench.sh)"
  echo
  header
} >"$report"
failures=0

# ---- (1) write IOPS ---------------------------------------------------------------------
if [[ ,$parts, = *,iops,* ]]; then
  nv=${#variant_list[@]}
  total=$((rounds * ${#conn_list[@]} * nv))
  log "(1) $total samples ($nv variants x ${#conn_list[@]} connection counts x $rounds rounds); fresh: $writes writes, steady: ${steady_ramp}+${steady_runtime} s"
  n=0
  for ((round = 1; round <= rounds; round++)); do
    for j in "${conn_list[@]}"; do
      for ((k = 0; k < nv; k++)); do
        v=${variant_list[$(( (k + round - 1) % nv ))]}
        n=$((n + 1))
        busy=$(wait_for_idle)
        base=$raw_dir/r$round.c$j.$v
        if ! start_server "$v" "$base.server.log"; then
          log "FAILED: $v did not start (round $round, $j conns); log:"
          tail -n 5 "$base.server.log" >&2 || true
          stop_server
          failures=$((failures + 1))
          continue
        fi
        line="[$n/$total] round $round, $j conn, $v:"
        for job in fresh steady; do
          status=ok copied="" iops="" ios="" cpu=""
          if res=$(fio_job "$job" "$j" "$base.$job.json"); then
            read -r iops ios cpu <<<"$res"
          else
            status=fio-failed
          fi
          if [ "$v" = fleeced-fleece ] && [ "$job" = fresh ]; then
            copied=$(fleece_copied_pages || true)
          fi
          kill -0 "$server_pid" 2>/dev/null || status=server-died
          if [ "$status" != ok ]; then
            failures=$((failures + 1))
            log "FAILED $v $job (round $round, $j conns): $status"
            tail -n 3 "$base.$job.json.stderr" >&2 2>/dev/null || true
          fi
          printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$j" "$v" "$job" "$status" \
            "$iops" "$ios" "$cpu" "$copied" "$busy" >>"$samples"
          line+=" $job ${iops:-FAIL} IOPS (${cpu:-?} us CPU/write${copied:+, $copied pages copied})"
        done
        stop_server
        log "$line"
      done
    done
  done
  python3 - "$samples" "$writes" "$rounds" "$steady_ramp" "$steady_runtime" "$variants" >>"$report" <<'EOF'
import csv, statistics, sys
path, writes, rounds, ramp, runtime, order = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6].split(",")
rows = [r for r in csv.DictReader(open(path), delimiter="\t") if r["status"] == "ok"]
label = {"fleeced": "fleeced", "fleeced-fleece": "fleeced + fleece", "qsd": "qsd",
         "qsd-cbw-qcow2": "qsd + cbw (qcow2 target)", "qsd-cbw-raw": "qsd + cbw (raw target)"}
def med(conns, v, job, key="iops"):
    xs = [float(r[key]) for r in rows if r["conns"] == conns and r["variant"] == v and r["job"] == job and r[key]]
    return statistics.median(xs) if xs else None
def allv(conns, v, job):
    return [int(r["iops"]) for r in rows if r["conns"] == conns and r["variant"] == v and r["job"] == job]
def k(x):
    return "—" if x is None else (f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}")
def ratio(a, b):
    return "—" if a is None or b is None or not b else f"{a / b:.2f}×"
conns_seen = sorted({r["conns"] for r in rows}, key=int)
variants = [v for v in order if any(r["variant"] == v for r in rows)]
copied = [int(r["copied_pages"]) for r in rows if r["variant"] == "fleeced-fleece" and r["job"] == "fresh" and r["copied_pages"]]
print(f"- fresh: {writes} random 4 KiB writes at queue depth 32 (one 4 KiB block at most once), from the first write; "
      f"steady: random 4 KiB writes in the first 128 MiB, {runtime} s measured after {ramp} s of warm-up; median of {rounds} rounds, variant order rotated every round")
if copied:
    c = statistics.median(copied)
    print(f"- fresh writes that copied old data first: fleeced copies 4 KiB pages (counted by query-fleeces' copied-bytes): "
          f"{c:.0f} pages for {writes} writes = {100 * c / writes:.1f}%; qsd + cbw copies the whole 64 KiB cluster of the target "
          f"on the first write into each (about 88% of these writes); the offsets are the same for every server")
print()
cols = [label[v] for v in variants]
ratios = []
if "fleeced" in variants and "fleeced-fleece" in variants:
    ratios.append(("fleece / no fleece (target ≥ 0.6)", "fleeced-fleece", "fleeced"))
for q in ("qsd-cbw-qcow2", "qsd-cbw-raw"):
    if "fleeced-fleece" in variants and q in variants:
        ratios.append((f"fleeced+fleece / {label[q]} (target ≥ 2)", "fleeced-fleece", q))
for q in ("qsd-cbw-qcow2", "qsd-cbw-raw"):
    if "qsd" in variants and q in variants:
        ratios.append((f"{label[q]} / qsd", q, "qsd"))
print("| random 4 KiB writes, qd 32 | " + " | ".join(cols) + " | " + " | ".join(r[0] for r in ratios) + " |")
print("|---|" + "--:|" * (len(cols) + len(ratios)))
for job in ("fresh", "steady"):
    for c in conns_seen:
        name = f"{job}, {c} conn" + ("" if c == "1" else "s")
        cells = [k(med(c, v, job)) for v in variants]
        rcells = [ratio(med(c, a, job), med(c, b, job)) for _, a, b in ratios]
        print(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(rcells) + " |")
print()
print("The server's CPU time (all its threads) per write and as cores busy (medians), and every sample's IOPS:")
print()
print("| job | variant | server CPU µs/write | server cores busy | IOPS of each round |")
print("|---|---|--:|--:|---|")
for job in ("fresh", "steady"):
    for c in conns_seen:
        for v in variants:
            cpu = med(c, v, job, "cpu_us_per_io")
            iops = med(c, v, job)
            cores = "—" if cpu is None or iops is None else f"{cpu * iops / 1e6:.2f}"
            print(f"| {job}, {c} conn | {label[v]} | {'—' if cpu is None else f'{cpu:.1f}'} | {cores} | {' '.join(k(x) for x in allv(c, v, job))} |")
print()
EOF
fi

# ---- (2) incremental pull ---------------------------------------------------------------
timed() {  # command... -> prints wall seconds; stdout of the command to $work/timed.out
  local t0 t1
  t0=$(date +%s%N)
  timeout -k 5 600 "$@" >"$work/timed.out" 2>"$work/timed.err" || { cat "$work/timed.err" >&2; return 1; }
  t1=$(date +%s%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}'
}
if [[ ,$parts, = *,pull,* ]]; then
  log "(2) incremental pull: $dirty_fraction of the granules dirty, layouts $layouts, $pull_rounds rounds"
  start_server fleeced "$raw_dir/pull.server.log" || die "fleeced did not start for the pull part"
  view=$(uri_of disk0-fleece)
  for layout in "${layout_list[@]}"; do
    fctl bitmap add disk0 b --no-persistent
    /usr/bin/python3 "$script_dir/incremental_pull.py" dirty "$(uri_of disk0)" \
      --fraction "$dirty_fraction" --layout "$layout" >/dev/null
    dirty=$(fctl --json qmp query-dirty-bitmaps | python3 -c '
import json, sys
print(sum(b["count"] for b in json.load(sys.stdin) if b["node"] == "disk0" and b["name"] == "b"))')
    for ((round = 1; round <= pull_rounds; round++)); do
      wait_for_idle >/dev/null
      fctl fleece start disk0 --id pull --bitmap b >/dev/null
      methods=(incremental full-libnbd full-nbdcopy)
      for ((k = 0; k < 3; k++)); do
        m=${methods[$(( (k + round - 1) % 3 ))]}
        dest=$work/pulled.raw
        rm -f "$dest"
        case "$m" in
          incremental) t=$(timed /usr/bin/python3 "$script_dir/incremental_pull.py" pull "$view" --bitmap b --out "$dest") ;;
          full-libnbd) t=$(timed /usr/bin/python3 "$script_dir/incremental_pull.py" pull "$view" --full --out "$dest") ;;
          full-nbdcopy) t=$(timed nbdcopy "$view" "$dest") ;;
        esac || { failures=$((failures + 1)); log "FAILED $m ($layout, round $round)"; continue; }
        bytes=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read() or "{}").get("bytes", ""))' "$work/timed.out" 2>/dev/null || true)
        [ -n "$bytes" ] || bytes=$size_bytes
        rm -f "$dest"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$layout" "$round" "$m" "$t" "$bytes" "$dirty" >>"$pulls"
        log "pull $layout round $round $m: $t s ($bytes bytes)"
      done
      fctl fleece stop pull --rollback   # b gets its granules back for the next round
    done
    fctl bitmap remove disk0 b
  done
  stop_server
  python3 - "$pulls" "$size_bytes" "$pull_rounds" >>"$report" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
size, rounds = int(sys.argv[2]), sys.argv[3]
print(f"Incremental pull of the fleece export (median of {rounds} rounds, wall time of the whole command, into a file in /dev/shm):")
print()
print("| dirty granules | dirty fraction | full, nbdcopy | full, libnbd script | incremental, libnbd script | incremental / full nbdcopy | incremental / full libnbd |")
print("|---|--:|--:|--:|--:|--:|--:|")
for layout in dict.fromkeys(r["layout"] for r in rows):
    rs = [r for r in rows if r["layout"] == layout]
    def med(m):
        xs = [float(r["seconds"]) for r in rs if r["method"] == m]
        return statistics.median(xs) if xs else None
    dirty = int(rs[0]["dirty_bytes"])
    inc, fl, fn = med("incremental"), med("full-libnbd"), med("full-nbdcopy")
    what = {"scattered": "scattered single granules", "clustered": "clustered, 1 MiB runs"}[layout]
    f = lambda x: "—" if x is None else f"{x:.2f} s"
    r = lambda a, b: "—" if a is None or not b else f"{a / b:.3f}"
    print(f"| {dirty // 65536} {what} | {dirty / size:.3f} | {f(fn)} | {f(fl)} | {f(inc)} | {r(inc, fn)} | {r(inc, fl)} |")
print()
EOF
fi

# ---- (3) optional: where fleeced's time goes during the fresh job ------------------------
if [ "$perf_pass" = 1 ]; then
  log "(3) perf record -g on fleeced during one fresh job with a fleece"
  start_server fleeced-fleece "$raw_dir/perf.server.log" || die "fleeced did not start for --perf"
  timeout -k 5 120 perf record -q -g -o "$raw_dir/perf.data" -p "$(server_main_pid)" \
    >"$raw_dir/perf.stderr" 2>&1 &
  perf_pid=$!
  sleep 1
  res=$(fio_job fresh 1 "$raw_dir/perf.fresh.json") || die "fio failed in the --perf pass"
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" 2>/dev/null || true
  perf_pid=""
  stop_server
  {
    echo "perf record -g on fleeced during one fresh job with a fleece, 1 connection ($(awk '{print $1}' <<<"$res") IOPS under perf):"
    echo "share of fleeced's CPU samples spent in each function and what it calls (\`perf report --children --sort sym\`, top 30):"
    echo
    echo '```'
    perf report -i "$raw_dir/perf.data" --children --sort sym --stdio 2>/dev/null \
      | grep -E '^ +[0-9]' | head -n 30 || true
    echo '```'
    echo
  } >>"$report"
fi

cp "$report" "$out"
cat "$out"
log "results: $out (fio JSON, server logs and the samples in $raw_dir)"
if [ "$failures" -gt 0 ]; then
  log "$failures sample(s) failed"
  exit 1
fi
