"""The account quota at the defaults (a PROJECTION from settings, nothing is sent): the peak
requests a second the stage's route throttles and the posting budget allow, term by term, by the
same arithmetic `plugins/quota.js` checks before every package and deploy (it is called here,
through node), against `accountQuota`; then what the issue's small-channel workload needs of it:
1,000 channels of 10 members, one message per channel every 10 s.

Usage: python bench/quota.py [--stage dev] [--channels 1000] [--members 10] [--every 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import service_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between a channel's messages")
    args = parser.parse_args()
    config = service_config.resolved_config(args.stage)
    custom, environment = config["custom"], config["provider"]["environment"]
    script = "const {terms} = require('./plugins/quota.js'); console.log(JSON.stringify(terms(...JSON.parse(process.argv[1]))));"
    found = json.loads(
        subprocess.run(
            ["node", "-e", script, json.dumps([custom, environment])], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
    )
    quota = float(custom["limits"]["accountQuota"])
    print(f"The stage at its defaults (stage {args.stage}), PROJECTED peak requests/s against accountQuota {quota:,.0f}:")
    for name, value in found["rates"].items():
        print(f"  {value:>8,.0f}  {name}")
    total = sum(found["rates"].values())
    print(f"  {total:>8,.0f}  in all: {total / quota:.0%} of the quota")
    bursts = sum(found["bursts"].values())
    print(f"  {bursts:>8,.0f}  at once (the routes' bursts), against {quota / 2:,.0f}")

    messages = args.channels / args.every
    posts = messages * args.members
    throttle = float(custom["limits"]["sendMessageRate"])
    threshold = int(custom["delivery"]["fanoutThreshold"])
    inline = args.members <= threshold
    print(f"\nThe small-channel workload: {args.channels:,} channels x {args.members} members, a message per channel every {args.every:g} s")
    print(f"  {messages:,.0f} sendMessage frames/s against the route's throttle of {throttle:,.0f}: {'admitted' if messages <= throttle else 'REFUSED in part'}")
    print(f"  {posts:,.0f} posts/s, {'inline (a channel of at most ' + str(threshold) + ')' if inline else 'by the workers'}: "
          f"{posts / quota:.0%} of the quota")
    return 0 if total <= quota and bursts <= quota / 2 and messages <= throttle else 1


if __name__ == "__main__":
    raise SystemExit(main())
