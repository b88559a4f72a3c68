"""RSS over time of a bursty program under several allocators, as a picture.

Runs build/bench/rss_bursts (benches/rss_bursts.c: 4 threads allocate 1 GiB
of small blocks, free them, the program idles 5 s; 5 rounds) under glibc,
obmem, mimalloc 3 and jemalloc (each by LD_PRELOAD on the same binary),
prints the area under each RSS curve and the RSS at the end of each idle
phase, and draws benches/rss_bursts.png. Installs matplotlib with pip if it
is missing. Usage: python3 benches/rss_plot.py [--quick]
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "bench")
PROG = os.path.join(BUILD, "rss_bursts")

ALLOCATORS = [
    ("glibc", ""),
    ("obmem", os.path.join(ROOT, "target", "release", "libobmem.so")),
    ("mimalloc3", os.path.join(ROOT, "build", "mimalloc3", "target", "release", "libmimalloc3.so")),
    ("jemalloc", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
]


def ensure_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run(lib, args):
    env = dict(os.environ)
    if lib:
        env["LD_PRELOAD"] = lib
    out = subprocess.run([PROG] + args, env=env, check=True, capture_output=True, text=True).stdout
    samples, result = [], ""
    for line in out.splitlines():
        if line.startswith("rss "):
            _, t, kib = line.split()
            samples.append((float(t) / 1e3, int(kib) / 1024))
        elif line.startswith("RESULT"):
            result = line
    return samples, result


def main():
    quick = "--quick" in sys.argv
    args = ["--mib", "256", "--rounds", "2", "--idle-ms", "1000"] if quick else []
    os.makedirs(BUILD, exist_ok=True)
    subprocess.run(["gcc", "-O2", "-o", PROG, os.path.join(ROOT, "benches", "rss_bursts.c"), "-lpthread"],
                   check=True)
    plt = ensure_matplotlib()
    fig, ax = plt.subplots(figsize=(10, 5))
    print("allocator    area (MiB*s)  RSS at the end of each idle phase (MiB)")
    for name, lib in ALLOCATORS:
        if lib and not os.path.exists(lib):
            print(f"{name:<12} skipped: {lib} is missing (make bench builds or installs it)")
            continue
        samples, result = run(lib, args)
        fields = dict(f.split("=", 1) for f in result.split()[1:])
        idle = [int(k) / 1024 for k in fields["after_idle_kib"].split(",")]
        print(f"{name:<12} {float(fields['area_mib_s']):>12.1f}  " + " ".join(f"{v:.1f}" for v in idle))
        ax.plot([t for t, _ in samples], [r for _, r in samples], label=name)
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("4 threads allocate 1 GiB of 16-512 B blocks, free them, idle 5 s; 5 rounds"
                 if not quick else "rss_bursts --quick")
    ax.legend()
    fig.tight_layout()
    png = os.path.join(ROOT, "benches", "rss_bursts.png" if not quick else "rss_bursts_quick.png")
    fig.savefig(png, dpi=90)
    print(f"picture: {png}")


if __name__ == "__main__":
    main()
