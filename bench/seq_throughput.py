"""How many messages a second one conversation takes, measured OFFLINE (moto server, with
scripts/moto_fixes applied, as `make offline` runs it), with 1 to N concurrent senders.

Each sender calls chat.history.append in a loop for --seconds: the real seq transaction (a
consistent read of the head, then TransactWriteItems of head + message). Printed per sender
count: messages a second into ONE conversation, the same senders each in THEIR OWN conversation
(no contention: the baseline, in the same run), the ratio, how many attempts a message took, and
a check that the seqs are 1..n with no gap or repeat.

What this measures is moto's speed and the retry loop's behaviour under contention, not
DynamoDB's: on AWS each round trip is a few milliseconds over the network (a projection from
that is in docs/costs.md, labelled as such).

Usage: python bench/seq_throughput.py [--senders 1 2 4 8] [--seconds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def moto_server() -> Any:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "scripts.moto_server", "-H", "127.0.0.1", "-p", str(port)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=10)


def run(history: Any, senders: int, seconds: float, shared: bool, label: str) -> dict[str, Any]:
    """Senders storing as fast as they can for `seconds`, into one conversation or each its own."""
    from chat.errors import Refusal

    stored: list[int] = []
    transactions, refused = [0], [0]
    lock = threading.Lock()
    client = history.history_table().meta.client
    original = client.transact_write_items

    def counted(**kwargs: Any) -> Any:
        with lock:
            transactions[0] += 1
        return original(**kwargs)

    def sender(n: int, deadline: float) -> None:
        conversation = f"bench-{label}" if shared else f"bench-{label}-{n}"
        while time.monotonic() < deadline:
            try:
                appended = history.append(conversation, history.new_message({"n": n}, sender=f"s{n}"))
            except Refusal:  # too busy for APPEND_SECONDS: the client would be asked to resend
                with lock:
                    refused[0] += 1
                continue
            with lock:
                stored.append(appended.message["seq"])

    client.transact_write_items = counted
    started = time.monotonic()
    threads = [threading.Thread(target=sender, args=(n, started + seconds)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    client.transact_write_items = original
    gap_free = sorted(stored) == list(range(1, len(stored) + 1)) if shared else True
    return {"rate": len(stored) / elapsed, "attempts": transactions[0] / max(1, len(stored)), "gap_free": gap_free,
            "count": len(stored), "refused": refused[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--senders", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    with moto_server() as endpoint:
        os.environ.update(
            AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=endpoint, HISTORY_TABLE="bench-history", CONVERSATIONS_TABLE="bench-conversations",
            LOG_LEVEL="WARNING",
        )
        import boto3

        from scripts import service_config

        tables = service_config.table_resources(service_config.resolved_config("bench"))
        client = boto3.client("dynamodb")
        for logical_id, name in (("HistoryTable", "bench-history"), ("ConversationsTable", "bench-conversations")):
            service_config.create_table(client, tables[logical_id], name)
        from chat import history

        print(f"Messages a second into one conversation, measured OFFLINE on moto server ({os.cpu_count()} cores), "
              f"{args.seconds:g} s per run:")
        print(f"  {'senders':>7}  {'one conversation':>16}  {'own conversations':>17}  {'ratio':>5}  {'attempts/msg':>12}  "
              f"{'refused':>7}  seqs 1..n")
        for senders in args.senders:
            shared = run(history, senders, args.seconds, True, f"shared{senders}")
            apart = run(history, senders, args.seconds, False, f"apart{senders}")
            print(f"  {senders:>7}  {shared['rate']:>14.0f}/s  {apart['rate']:>15.0f}/s  {shared['rate'] / apart['rate']:>5.2f}  "
                  f"{shared['attempts']:>12.2f}  {shared['refused']:>7}  {'yes' if shared['gap_free'] else 'NO'} "
                  f"({shared['count']} messages)", flush=True)
            if not shared["gap_free"]:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
