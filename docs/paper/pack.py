"""Pack the complete runs of a results root into one .tar.gz (the newest complete version of each
run, under its `<experiment>/<run id>/` path), for carrying results off a lent machine.

Runs without a complete version (cut off, failed) are listed and left out: they are run again from
scratch wherever the pack is unpacked. Unpack into a results root with `tar xzf PACK -C ROOT`.

Usage: python3 docs/paper/pack.py ROOT PACK.tar.gz
"""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

from sslspec.store.read import pick, run_dirs


def main(root: Path, pack: Path) -> int:
    kept, left = 0, []
    with tarfile.open(pack, "w:gz") as tar:
        for exp, d in run_dirs(root):
            store, status = pick(d)
            if store is None:
                left.append(f"{exp}/{Path(str(d)).name} ({status})")
                continue
            tar.add(str(store), arcname=f"{exp}/{Path(str(d)).name}/{Path(str(store)).name}")
            kept += 1
    print(f"packed {kept} complete runs into {pack} ({pack.stat().st_size / 1e6:.1f} MB)")
    if left:
        print(f"left out {len(left)}: " + ", ".join(left))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
