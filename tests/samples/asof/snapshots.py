"""A stand-in for ``neonctl connection-string main@{at}``: prints the URL of the latest snapshot
at or before AT, read from a JSON map {ISO time: URL}, after a few lines of noise.

    python snapshots.py --map FILE 2025-10-08T09:41:27.118Z
"""

import argparse
import json
import sys
from datetime import datetime


def when(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--map", required=True)
    parser.add_argument("at")
    args = parser.parse_args()
    with open(args.map, encoding="utf-8") as fh:
        snapshots = sorted((when(t), url) for t, url in json.load(fh).items())
    at = when(args.at)
    print("Fetching branch history...")
    print(f"Resolving point in time {args.at}")
    print()
    earlier = [url for t, url in snapshots if t <= at]
    if not earlier:
        print(f"error: {args.at} is before the history retention window", file=sys.stderr)
        return 1
    print(earlier[-1])
    print("   ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
