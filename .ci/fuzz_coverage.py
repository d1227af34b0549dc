#!/usr/bin/env python3
"""Line coverage of the functions each fuzz target aims at.

Reads the profile `cargo fuzz coverage TARGET` left in
fuzz/coverage/TARGET/coverage.profdata and the coverage build of the
target, and prints, per target, every function under test (its lines
merged over all generic instantiations, as `llvm-cov show` counts them):
lines hit / lines, then the total. Run through `.ci/fuzz-coverage`.

"Under test" is the code that turns a peer's bytes into values or errors
(the parsers, validators and ring operations); Display/Debug impls and
the sending sides that share these files are not counted, and the
functions a target cannot reach by design are listed in SKIP with the
reason.
"""
import glob
import json
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FUZZ = os.path.join(ROOT, "fuzz")

# target -> [(file under the repository root, regex on the function name)]
UNDER_TEST = {
    "recv_message": [("codec/src/archive.rs", r"^shmlane_codec::archive::(view|view_in_place|copy_into)$|Scratch>::new$")],
    "ring_region": [("ring/src/spsc.rs", r"."), ("ring/src/mpmc.rs", r".")],
    "ring_ops": [("ring/src/spsc.rs", r"."), ("ring/src/mpmc.rs", r".")],
    "stream_frames": [("src/transport/decode.rs", r"StreamDecoder>::")],
    "kernel_frames": [
        ("src/transport/decode.rs", r"SignalDecoder>::|StreamDecoder>::"),
        ("src/ipc/frames.rs", r"::frame_message$"),
    ],
    "schema": [("shm/src/segment/options.rs", r"::(first_difference|schema_difference|printable)$")],
    "open_segment": [
        ("shm/src/segment/open.rs", r"."),
        ("shm/src/header.rs", r"."),
        ("shm/src/segment/participants.rs", r"."),
    ],
}
# Never counted: formatting, and code that only runs on our own side.
NOT_PEER_INPUT = re.compile(r"fmt::(Display|Debug)|as core::fmt::|Default>::default")


def tool(name):
    found = glob.glob(os.path.expanduser(
        "~/.rustup/toolchains/nightly-*/lib/rustlib/*/bin/" + name))
    if not found:
        sys.exit(f"{name} not found: rustup +nightly component add llvm-tools-preview")
    return found[0]


def strip_generics(name):
    out, depth = [], 0
    i = 0
    while i < len(name):
        if name.startswith("::<", i) and depth == 0:
            depth, i = 1, i + 3
            continue
        c = name[i]
        if depth:
            depth += (c == "<") - (c == ">")
        else:
            out.append(c)
        i += 1
    return "".join(out)


def line_counts(cov, profile, binary, path):
    """{line: count} for the instrumented lines of one file."""
    text = subprocess.run(
        [cov, "show", "-instr-profile=" + profile, binary, path,
         "-show-instantiations=false", "-use-color=false"],
        check=True, capture_output=True, text=True).stdout
    counts = {}
    for row in text.splitlines():
        parts = row.split("|", 2)
        if len(parts) < 3 or not parts[0].strip().isdigit():
            continue
        c = parts[1].strip()
        if not c:
            continue
        mult = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}.get(c[-1], 1)
        counts[int(parts[0])] = float(c.rstrip("kMGTE")) * mult
    return counts


def report(target, cov, filt):
    profile = os.path.join(FUZZ, "coverage", target, "coverage.profdata")
    binary = glob.glob(os.path.join(
        FUZZ, "target", "*", "coverage", "*", "release", target))
    if not os.path.exists(profile) or not binary:
        print(f"{target}: no profile; run .ci/fuzz-coverage {target}")
        return None
    binary = binary[0]
    funcs = json.loads(subprocess.run(
        [cov, "export", "-format=text", "-skip-expansions",
         "-instr-profile=" + profile, binary],
        check=True, capture_output=True, text=True).stdout)["data"][0]["functions"]
    names = subprocess.run([filt], input="\n".join(f["name"] for f in funcs),
                           check=True, capture_output=True, text=True).stdout.splitlines()
    total_hit = total = 0
    print(f"\n{target}")
    for rel, pattern in UNDER_TEST[target]:
        path = os.path.join(ROOT, rel)
        counts = line_counts(cov, profile, binary, path)
        spans = {}
        for f, name in zip(funcs, names):
            if not f["filenames"] or os.path.realpath(f["filenames"][0]) != os.path.realpath(path):
                continue
            regions = [r for r in f["regions"] if r[5] == 0]
            if not regions:
                continue
            first = min(r[0] for r in regions)
            last = max(r[2] for r in regions)
            name = re.sub(r"::h[0-9a-f]{16}$", "", strip_generics(name))
            old = spans.get(first)
            spans[first] = (name, max(last, old[1] if old else last))
        for first in sorted(spans):
            name, last = spans[first]
            if not re.search(pattern, name) or NOT_PEER_INPUT.search(name):
                continue
            lines = [n for n in range(first, last + 1) if n in counts]
            hit = sum(1 for n in lines if counts[n] > 0)
            total_hit += hit
            total += len(lines)
            print(f"  {hit:4}/{len(lines):<4} {rel}:{first} {name}")
    pct = 100.0 * total_hit / total if total else 0.0
    print(f"  {total_hit:4}/{total:<4} lines hit in the functions under test ({pct:.1f}%)")
    return target, total_hit, total


def main():
    cov, filt = tool("llvm-cov"), "rustfilt"
    targets = sys.argv[1:] or sorted(UNDER_TEST)
    rows = [r for r in (report(t, cov, filt) for t in targets) if r]
    print("\n| target | lines hit / lines in the functions under test |\n|---|---|")
    for t, hit, n in rows:
        print(f"| `{t}` | {hit} / {n} ({100.0 * hit / n:.1f}%) |")


if __name__ == "__main__":
    main()
