#!/usr/bin/env bash
# Sets up and runs fleeced on an embedded demo config: installs missing Debian
# packages, builds, creates demo images under $FLEECE_DEMO_DIR (default
# /tmp/fleece-demo), and runs fleeced in the foreground on 127.0.0.1:10809 plus a
# control socket. Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"

demo=${FLEECE_DEMO_DIR:-/tmp/fleece-demo}
mkdir -p "$demo"
base=$demo/disk0-base.raw
disk=$demo/disk0.qcow2
golden=$demo/golden.raw
# disk0: a qcow2 overlay over a raw base image (a two-layer chain).
if [ ! -e "$disk" ]; then
  rm -f "$base"
  qemu-img create -q -f raw "$base" 1G
  qemu-io -f raw -c 'write -P 0x61 0 4M' -c 'write -P 0x62 512M 1M' "$base" >/dev/null
  qemu-img create -q -f qcow2 -b "$(basename "$base")" -F raw "$disk" 1G
  qemu-io -f qcow2 -c 'write -P 0x63 1M 1M' "$disk" >/dev/null
fi
if [ ! -e "$golden" ]; then
  qemu-img create -q -f raw "$golden" 64M
  qemu-io -f raw -c 'write -P 0x67 0 64M' "$golden" >/dev/null
fi

cat > "$demo/fleeced.yaml" <<YAML
# fleece demo configuration (written by scripts/demo.sh)
listen:
  - tcp: 127.0.0.1:10809
  - unix: $demo/nbd.sock
control:
  unix: $demo/control.sock
log:
  level: info
nodes:
  - node-name: disk0
    driver: qcow2          # its backing file comes from the image header
    file: { driver: file, filename: $disk }
  - node-name: golden
    driver: raw
    read-only: true
    file: { driver: file, filename: $golden, read-only: true }
exports:
  - name: disk0
    node: disk0
    description: "demo disk (writable qcow2 over a raw base, 1 GiB)"
    writable: true
    allocation-depth: true
    bitmaps: [nightly]
  - name: golden
    node: golden
    description: "demo golden image (read-only)"
bitmaps:                   # records every write to disk0 (stored in the qcow2 image)
  - { node: disk0, name: nightly, persistent: true }
fleecing:
  overlay-dir: $demo/overlays
YAML
mkdir -p "$demo/overlays"

cat <<HINTS

fleeced demo: serving $demo/fleeced.yaml
  exports:  nbd://127.0.0.1:10809/disk0 (writable), nbd://127.0.0.1:10809/golden (read-only)

Try, in another terminal:
  nbdinfo --list nbd://127.0.0.1:10809
  nbdinfo --map nbd://127.0.0.1:10809/disk0
  nbdinfo --map=qemu:allocation-depth nbd://127.0.0.1:10809/disk0
  nbdcopy nbd://127.0.0.1:10809/golden $demo/golden-copy.raw
  qemu-io -f raw -c 'read -P 0x63 1M 1M' nbd://127.0.0.1:10809/disk0
  $root/build/bin/fleecectl --socket $demo/control.sock exports
  $root/build/bin/fleecectl --socket $demo/control.sock nodes

  # changed blocks, a point-in-time snapshot of the live disk, an incremental backup:
  qemu-io -f raw -c 'write -P 0x64 8M 64k' nbd://127.0.0.1:10809/disk0
  nbdinfo --map=qemu:dirty-bitmap:nightly nbd://127.0.0.1:10809/disk0
  $root/build/bin/fleecectl --socket $demo/control.sock fleece start disk0 --bitmap nightly
  nbdinfo --map=qemu:dirty-bitmap:nightly nbd://127.0.0.1:10809/disk0-fleece
  $root/build/bin/fleecectl --socket $demo/control.sock fleece stop disk0-fleece
  FLEECE_NBD_URI='nbd+unix:///?socket=$demo/nbd.sock' \\
    $root/build/bin/fleecectl --socket $demo/control.sock backup full disk0 --bitmap nightly --to $demo/backup
  qemu-io -f raw -c 'write -P 0x65 16M 64k' nbd://127.0.0.1:10809/disk0
  FLEECE_NBD_URI='nbd+unix:///?socket=$demo/nbd.sock' \\
    $root/build/bin/fleecectl --socket $demo/control.sock backup incremental disk0 --bitmap nightly --to $demo/backup
  $root/build/bin/fleecectl backup restore $demo/backup --to $demo/restored.raw

  kill -HUP \$(pidof fleeced)      # re-read the config (edit exports first)

Ctrl-C stops fleeced (in-flight requests finish, images are flushed).

HINTS
exec "$root/build/bin/fleeced" --config "$demo/fleeced.yaml"
