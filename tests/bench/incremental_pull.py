#!/usr/bin/python3
"""Incremental-backup client for tests/bench/fleece_bench.sh (libnbd, run with /usr/bin/python3).

  incremental_pull.py dirty URI --fraction F --layout scattered|clustered [--seed N]
      writes new data into F of the disk's 64 KiB granules through the live export URI:
      `scattered` picks single granules at random, `clustered` random runs of 16 granules
      (1 MiB); prints the number of granules written
  incremental_pull.py pull URI --out FILE [--bitmap B | --full]
      reads the export URI into FILE at the same offsets (FILE is created sparse, the size
      of the export): with --bitmap B only the extents that `qemu:dirty-bitmap:B` marks
      dirty, with --full every byte. Requests of at most --request bytes, --inflight of
      them in flight at once (aio), each read into a reused buffer and written with
      pwrite. Prints one line of JSON: bytes read, dirty extents,
      requests, and the seconds spent in block status and in reading
"""
import argparse
import json
import os
import random
import sys
import time

import nbd

GRANULE = 64 * 1024
STATUS_CHUNK = 1 << 30  # bytes of the disk asked about per NBD_CMD_BLOCK_STATUS


def connect(uri, context=None):
    h = nbd.NBD()
    h.set_pread_initialize(False)
    if context:
        h.add_meta_context(context)
    h.connect_uri(uri)
    if context and not h.can_meta_context(context):
        sys.exit(f"incremental_pull: the server does not offer {context}")
    return h


def granules_to_dirty(size, fraction, layout, seed):
    """Returns sorted (first granule, count) runs covering `fraction` of the disk."""
    total = size // GRANULE
    want = max(1, round(total * fraction))
    rng = random.Random(seed)
    if layout == "scattered":
        return [(g, 1) for g in sorted(rng.sample(range(total), want))]
    run = 16
    starts = sorted(rng.sample(range(total // run), max(1, want // run)))
    return [(s * run, run) for s in starts]


def run_aio(h, requests, inflight, issue):
    """Issues issue(h, slot, offset, length, done) for each (offset, length), at most
    `inflight` at a time; slot (0..inflight-1) is free for the request's own use until its
    completion calls done(slot). Returns when all completed."""
    pending = list(reversed(requests))
    free = list(range(inflight))

    while pending or len(free) < inflight:
        while pending and free:
            off, length = pending.pop()
            issue(h, free.pop(), off, length, free.append)
        h.poll(-1)


def cmd_dirty(args):
    h = connect(args.uri)
    size = h.get_size()
    runs = granules_to_dirty(size, args.fraction, args.layout, args.seed)
    data = memoryview(os.urandom(16 * GRANULE))
    failures = []

    def issue(h, slot, off, length, done):
        def completed(err):
            if err.value:
                failures.append(f"write at {off}: {err}")
            done(slot)
            return 1
        h.aio_pwrite(data[:length], off, completion=completed)

    run_aio(h, [(g * GRANULE, n * GRANULE) for g, n in runs], args.inflight, issue)
    if failures:
        sys.exit(f"incremental_pull: {len(failures)} writes failed, first: {failures[0]}")
    h.flush()
    h.shutdown()
    print(sum(n for _, n in runs))


def dirty_extents(h, context, size):
    """(offset, length) runs that `context` marks dirty (flag bit 0), adjacent ones merged."""
    runs = []
    off = 0
    while off < size:
        got = []

        def extents(ctx, base, entries, err):
            if ctx == context:
                got.append((base, entries))
            return 0

        h.block_status(min(STATUS_CHUNK, size - off), off, extents)
        if not got or not got[0][1]:
            sys.exit(f"incremental_pull: no block status for {context} at {off}")
        pos = off
        entries = got[0][1]
        for i in range(0, len(entries), 2):
            length, flags = entries[i], entries[i + 1]
            length = min(length, size - pos)
            if flags & 1:
                if runs and runs[-1][0] + runs[-1][1] == pos:
                    runs[-1][1] += length
                else:
                    runs.append([pos, length])
            pos += length
            if pos >= size:
                break
        off = pos
    return [tuple(r) for r in runs]


def cmd_pull(args):
    context = None if args.full else f"qemu:dirty-bitmap:{args.bitmap}"
    h = connect(args.uri, context)
    size = h.get_size()
    t0 = time.monotonic()
    extents = [(0, size)] if args.full else dirty_extents(h, context, size)
    t1 = time.monotonic()
    requests = []
    for off, length in extents:
        end = off + length
        while off < end:
            n = min(args.request, end - off)
            requests.append((off, n))
            off += n
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.ftruncate(fd, size)
    failures = []

    buffers = [memoryview(bytearray(args.request)) for _ in range(args.inflight)]

    def issue(h, slot, off, length, done):
        buf = buffers[slot][:length]

        def completed(err):
            if err.value:
                failures.append(f"read at {off}: {err}")
            else:
                os.pwrite(fd, buf, off)
            done(slot)
            return 1
        h.aio_pread(buf, off, completion=completed)

    run_aio(h, requests, args.inflight, issue)
    os.close(fd)
    if failures:
        sys.exit(f"incremental_pull: {len(failures)} reads failed, first: {failures[0]}")
    t2 = time.monotonic()
    h.shutdown()
    print(json.dumps({"bytes": sum(n for _, n in requests), "extents": len(extents),
                      "requests": len(requests), "size": size,
                      "status_s": round(t1 - t0, 4), "read_s": round(t2 - t1, 4)}))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dirty")
    d.add_argument("uri")
    d.add_argument("--fraction", type=float, required=True)
    d.add_argument("--layout", choices=["scattered", "clustered"], default="scattered")
    d.add_argument("--seed", type=int, default=5)
    d.add_argument("--inflight", type=int, default=16)
    q = sub.add_parser("pull")
    q.add_argument("uri")
    q.add_argument("--out", required=True)
    g = q.add_mutually_exclusive_group(required=True)
    g.add_argument("--bitmap")
    g.add_argument("--full", action="store_true")
    q.add_argument("--request", type=int, default=256 * 1024)
    q.add_argument("--inflight", type=int, default=16)
    args = p.parse_args()
    (cmd_dirty if args.cmd == "dirty" else cmd_pull)(args)


if __name__ == "__main__":
    main()
