"""Broadcast capacity on AWS: measured CPU per post and per connection here, projected to Lambda.

Measured on this machine, in this process (a loopback HTTP sink in another process stands in for
API Gateway's @connections, DynamoDB and SQS, and answers at once, so what is left is our CPU):

  worker   worker.deliver_job: one SQS job of DELIVERY_BATCH_SIZE connections, posted through
           boto3 by the bounded thread pool (botocore request building, SigV4, urllib3)
  sender   fanout.broadcast's work for a room: reading every connection id from DynamoDB Scan
           pages, cutting them into jobs, SendMessageBatch to SQS

Projected (labelled as such), from those figures and Lambda's rule that CPU is proportional to
memory (1,769 MB = 1 vCPU): one worker's rate at its memory, capped at its share of the posting
budget (POSTING_BUDGET_PER_SECOND / DELIVERY_CONCURRENCY), and the time until the last
connection of a room of N has been posted to, beside the floor that API Gateway's account limit
of 10,000 requests/s sets.

Usage: python bench/broadcast_capacity.py [--posts 6000] [--budget B] [--concurrency C]
       (budget and concurrency default to serverless.yml's, i.e. its --param defaults)
"""

from __future__ import annotations

from chat import jobs

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VCPU_MB = 1769  # Lambda: 1,769 MB of memory = one vCPU of CPU time
ACCOUNT_LIMIT = 10_000  # API Gateway requests/s per account and region, all APIs together
# Assumptions, not measurements (say so wherever they are used):
PICKUP_SECONDS = 1.0  # SQS to a running worker: a long poll returning, plus a cold start
SCAN_PAGE_ITEMS = 8_000  # DynamoDB stops a Scan page at 1 MB: about this many ~120-byte rows
SCAN_PAGE_SECONDS = 0.05  # DynamoDB's own time for one 1 MB Scan page, beside our parsing


class Sink(BaseHTTPRequestHandler):
    """Answers like the three services, at once: @connections posts 200, DynamoDB Scan pages of
    connection ids, SQS SendMessageBatch all successful."""

    protocol_version = "HTTP/1.1"
    pages = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        target = self.headers.get("X-Amz-Target", "")
        if target.endswith("Scan"):
            answer = self.scan_page(json.loads(body))
        elif target.endswith("SendMessageBatch"):
            entries = json.loads(body)["Entries"]
            answer = {"Successful": [{"Id": e["Id"], "MessageId": "m", "MD5OfMessageBody": "0"} for e in entries], "Failed": []}
        elif target.endswith("GetQueueUrl"):
            answer = {"QueueUrl": f"http://127.0.0.1:{self.server.server_address[1]}/123456789012/delivery"}
        else:  # PostToConnection
            answer = None
        data = json.dumps(answer).encode() if answer is not None else b""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def scan_page(self, request: dict[str, Any]) -> dict[str, Any]:
        start = int(request.get("ExclusiveStartKey", {}).get("connection_id", {}).get("S", "c0")[1:])
        total = int(os.environ["SINK_ROWS"])
        end = min(total, start + SCAN_PAGE_ITEMS)
        page: dict[str, Any] = {"Items": [{"connection_id": {"S": f"c{n:015d}="}} for n in range(start, end)], "Count": end - start}
        page["ScannedCount"] = page["Count"]
        if end < total:
            page["LastEvaluatedKey"] = {"connection_id": {"S": f"c{end}"}}
        return page

    def log_message(self, *args: Any) -> None:
        pass


def serve(port_queue: Any, rows: int) -> None:
    os.environ["SINK_ROWS"] = str(rows)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    server.daemon_threads = True
    port_queue.put(server.server_address[1])
    server.serve_forever()


class Context:
    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def cpu_and_wall(work: Any) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=6000, help="posts measured on the worker path")
    parser.add_argument("--room", type=int, default=100_000, help="connections read and queued on the sender path")
    parser.add_argument("--budget", type=float, help="POSTING_BUDGET_PER_SECOND (default: serverless.yml's)")
    parser.add_argument("--concurrency", type=int, help="DELIVERY_CONCURRENCY (default: serverless.yml's)")
    args = parser.parse_args()

    from scripts.service_config import resolved_config

    config = resolved_config("dev", params={
        **({"postingBudget": str(int(args.budget))} if args.budget else {}),
        **({"deliveryConcurrency": str(args.concurrency)} if args.concurrency else {}),
    })
    environment = config["provider"]["environment"]
    functions = config["functions"]
    worker_mb = functions["deliveryWorker"].get("memorySize", config["provider"]["memorySize"])
    sender_mb = functions["sendMessage"].get("memorySize", config["provider"]["memorySize"])
    budget = float(environment["POSTING_BUDGET_PER_SECOND"])
    concurrency = int(environment["DELIVERY_CONCURRENCY"])

    ports: Any = multiprocessing.Queue()
    sink = multiprocessing.Process(target=serve, args=(ports, args.room), daemon=True)
    sink.start()
    endpoint = f"http://127.0.0.1:{ports.get(timeout=10)}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="ap-northeast-2",
        AWS_ENDPOINT_URL=endpoint, LOG_LEVEL="WARNING",
        POSTING_BUDGET_PER_SECOND="1000000",  # measure the CPU, not the pacing
        DELIVERY_QUEUE_NAME="delivery",
    )
    os.environ.pop("IS_OFFLINE", None)
    from chat import connections, fanout, worker

    payload = json.dumps({"messages": [{"content": "서버리스 웹소켓 API 테스트", "sender": "alice"}]}, ensure_ascii=False).encode()
    batch = fanout.DELIVERY_BATCH_SIZE

    def job(n: int) -> Any:
        return jobs.DeliveryJob("m", endpoint, payload, tuple(f"c{n}-{i}" for i in range(batch)))

    def run_jobs(count: int) -> None:
        for n in range(count):
            worker.deliver_job(job(n), Context())

    jobs = max(1, args.posts // batch)
    with contextlib.redirect_stdout(open(os.devnull, "w")):  # the functions' JSON logs and metrics
        run_jobs(2)  # warm up: clients, pool, connections
        worker_cpu, worker_wall = cpu_and_wall(lambda: run_jobs(jobs))
        sender_cpu, sender_wall = cpu_and_wall(
            lambda: fanout.broadcast(endpoint, connections.all_ids(), payload, {"id": "m", "sent_at_ms": 0})
        )
    sink.terminate()
    posts = jobs * batch
    cpu_per_post = worker_cpu / posts

    worker_vcpu = worker_mb / VCPU_MB
    natural_rate = worker_vcpu / cpu_per_post
    share = budget / concurrency
    worker_rate = min(natural_rate, share)
    fleet_rate = concurrency * worker_rate
    sender_vcpu = sender_mb / VCPU_MB
    sender_cpu_per_connection = sender_cpu / args.room

    print(f"Measured here ({os.cpu_count()} cores, loopback sink in another process):")
    print(f"  worker path: {posts:,} posts in {jobs} jobs of {batch}: {worker_cpu:.2f} s CPU, {worker_wall:.2f} s wall")
    print(f"    CPU per post: {cpu_per_post * 1000:.3f} ms  ->  {1 / cpu_per_post:,.0f} posts/s per vCPU")
    print(f"  sender path: {args.room:,} connection ids read from Scan pages and queued: {sender_cpu:.2f} s CPU, {sender_wall:.2f} s wall")
    print(f"    CPU per connection: {sender_cpu_per_connection * 1e6:.1f} us")
    print()
    print(f"Settings (serverless.yml): worker {worker_mb} MB = {worker_vcpu:.2f} vCPU, sendMessage {sender_mb} MB = "
          f"{sender_vcpu:.3f} vCPU, posting budget {budget:,.0f}/s, concurrency {concurrency}, {batch} connections a job")
    print()
    print("PROJECTION for AWS Lambda (CPU in proportion to memory; computed from the figures above):")
    print(f"  one worker: {natural_rate:,.0f} posts/s by its CPU, capped at its budget share {share:,.0f}/s -> {worker_rate:,.0f}/s")
    print(f"  all {concurrency} workers: {fleet_rate:,.0f} posts/s ({fleet_rate / ACCOUNT_LIMIT:.0%} of the 10,000/s account limit)")
    print(f"  recommended concurrency for this budget: {math.ceil(budget / natural_rate)} (= ceil(budget / one worker's CPU rate))")
    print(f"  assumptions: SQS pickup + cold start {PICKUP_SECONDS:.1f} s; DynamoDB {SCAN_PAGE_SECONDS * 1000:.0f} ms a 1 MB Scan page "
          f"of ~{SCAN_PAGE_ITEMS:,} rows")
    print("  the sender queues each batch of jobs as soon as it is read, so the workers start after the first")
    print("  Scan page; the last post comes when the slower of the two is done:")
    print("  last post = pickup + max(first page + room / workers' rate, all pages + one job / one worker's rate)")
    print(f"  {'room':>9}  {'sender':>7}  {'posting':>8}  {'last post':>9}  {'floor (10,000/s)':>16}")
    for room in (1_000, 10_000, 100_000):
        page_time = min(room, SCAN_PAGE_ITEMS) * sender_cpu_per_connection / sender_vcpu + SCAN_PAGE_SECONDS
        sender = room * sender_cpu_per_connection / sender_vcpu + math.ceil(room / SCAN_PAGE_ITEMS) * SCAN_PAGE_SECONDS
        posting = room / fleet_rate
        last = PICKUP_SECONDS + max(page_time + posting, sender + batch / worker_rate)
        print(f"  {room:>9,}  {sender:>6.1f}s  {posting:>7.1f}s  {last:>8.1f}s  {room / ACCOUNT_LIMIT:>15.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
