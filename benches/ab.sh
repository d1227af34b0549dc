#!/usr/bin/env bash
# Paired before/after rounds of the cross-process figures, the order
# alternating each round (old first in odd rounds), so that a machine
# whose speed drifts (a shared VM) weighs on both sides alike:
#
#   benches/ab.sh OLD_DIR NEW_DIR [ROUNDS]
#
# Each DIR holds a release `shmlane` (cargo build --release -p shmlane-cli)
# and `mpmc_cost` (cargo build --release --example mpmc_cost) built from
# one commit, e.g. with `git worktree add`. Prints every round's rows,
# then the medians, the median of the paired new/old ratios and how many
# rounds each side won. The floor row is identical code on both sides:
# its paired ratio is the noise level of the run.
set -euo pipefail
old="$1"
new="$2"
rounds="${3:-12}"
log=$(mktemp)
for i in $(seq 1 "$rounds"); do
    if [ $((i % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
    for v in $order; do
        dir=$old
        [ "$v" = new ] && dir=$new
        echo "== round $i $v" | tee -a "$log"
        "$dir/shmlane" bench --only cross-process 2>/dev/null \
            | grep -E "floor|busy-poll|8 B, per message|8 B, batch" | tee -a "$log"
        "$dir/mpmc_cost" 2>/dev/null | tee -a "$log"
    done
done
python3 - "$log" <<'PY'
import re, statistics as st, sys
rows = {}
cur = None
for line in open(sys.argv[1]):
    m = re.match(r'== round (\d+) (old|new)', line)
    if m:
        cur = (int(m.group(1)), m.group(2))
        continue
    if cur is None:
        continue
    w = line.split()
    def put(k, v):
        rows.setdefault(k, {}).setdefault(cur[0], {})[cur[1]] = v
    if line.startswith('floor'): put('floor p50 ns', float(w[3]))
    elif line.startswith('shmlane SPSC, busy-poll'): put('SPSC busy-poll RTT p50 ns', float(w[3]))
    elif line.startswith('8 B, per message'): put('SPSC 8 B per message Mmsg/s', float(w[4]))
    elif line.startswith('8 B, batch'): put('SPSC 8 B batch 256 Mmsg/s', float(w[5]))
    elif line.startswith('shmlane MPMC, busy-poll'): put('MPMC (bench) busy-poll RTT p50 ns', float(w[3]))
    elif line.startswith('MPMC: 8 B, per message'): put('MPMC (bench) 8 B Mmsg/s', float(w[5]))
    elif line.startswith('mpmc 8 B throughput'): put('MPMC 8 B Mmsg/s', float(w[4]))
    elif line.startswith('mpmc busy-poll round trip'): put('MPMC busy-poll RTT p50 ns', float(w[5]))
for k, d in rows.items():
    pairs = [(v['old'], v['new']) for v in d.values() if 'old' in v and 'new' in v]
    if not pairs:
        continue
    higher = 'Mmsg' in k
    wins = sum(1 for a, b in pairs if (b > a if higher else b < a))
    print(f"{k:30s} n={len(pairs):2d} old {st.median(a for a, _ in pairs):8.2f} "
          f"new {st.median(b for _, b in pairs):8.2f} paired new/old "
          f"{st.median(b / a for a, b in pairs):5.2f}x  new better in {wins}/{len(pairs)}")
PY
rm -f "$log"
