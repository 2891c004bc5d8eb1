"""``python -m timewait.docs [--check] [--kernel] [DOC ...]``: regenerate or check the walkthroughs.

Run from the repository's root. Without DOC: ``docs/walkthrough.md`` and
``docs/walkthrough.zh.md``. ``--check`` changes nothing and exits 1 on any difference;
``--kernel`` also records the ``kernel:`` blocks (root and network namespaces needed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from timewait.docs import DEFAULT_DOCS, check, regenerate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m timewait.docs", description=__doc__.splitlines()[0])
    ap.add_argument("docs", nargs="*", type=Path, help="documents (default: both walkthroughs)")
    ap.add_argument("--check", action="store_true", help="compare with fresh runs; change nothing")
    ap.add_argument("--kernel", action="store_true", help="record the kernel: blocks too (root)")
    ap.add_argument("--root", type=Path, default=Path.cwd(), help="the repository (default: here)")
    args = ap.parse_args(argv)
    docs = args.docs or [args.root / d for d in DEFAULT_DOCS]
    failed = False
    for doc in docs:
        if args.check:
            problems = check(doc, args.root)
            for p in problems:
                print(p, file=sys.stderr)
            failed |= bool(problems)
            print(f"{doc.name}: {'differs' if problems else 'up to date'}")
        else:
            print(f"{doc.name}: {regenerate(doc, args.root, kernel=args.kernel)} block(s) changed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
