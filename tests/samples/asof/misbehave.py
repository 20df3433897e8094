"""An as-of command that fails in the way its first argument says: ``exit1``, ``silent``,
``sleep``, ``flood`` or ``garbage``; then the time (``{at}``)."""

import sys
import time

mode = sys.argv[1]
if mode == "exit1":
    print("connecting...")
    print("trying postgresql://neondb_owner:npg_CANARY-s3cret@ep-quiet-rain-123456.eu-central-1.aws.neon.tech/neondb",
          file=sys.stderr)
    print("error: could not reach postgresql://neondb_owner:npg_CANARY-s3cret@ep-quiet-rain-123456.eu-central-1"
          ".aws.neon.tech/neondb?sslmode=require (branch not found)", file=sys.stderr)
    sys.exit(1)
if mode == "silent":
    print("   ")
    sys.exit(0)
if mode == "sleep":
    time.sleep(60)
if mode == "flood":
    chunk = "x" * 65535 + "\n"
    while True:
        sys.stdout.write(chunk)
if mode == "garbage":
    print("https://console.neon.tech/app/projects/x?token=npg_CANARY-s3cret")
    sys.exit(0)
sys.exit(3)
