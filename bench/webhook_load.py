"""Answer time of the WeChat webhook under load, against real RabbitMQ.

    python bench/webhook_load.py [--requests 2000] [--concurrency 50] [--amqp URL]
    python bench/webhook_load.py --url http://host:8080/webhooks/wechat/wx_main \
        --token T --key K --app-id A         # a worker that is already running

By default it starts a worker (`feedback-ingest run --roles connectors`, its own
process) with one `wechat` connector in safe mode, publishing to a throwaway RabbitMQ
vhost, then fires `--requests` signed, encrypted text messages, `--concurrency` at a
time, exactly as WeChat sends them. Every answer must be the literal `success`, which
the worker only sends after the broker confirmed the event. Reports p50/p90/p99/max
answer time and throughput; WeChat gives up after 5 s, the target is p99 < 2 s.
Requests are built (encrypted) before the clock starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.wechat.crypto import MessageCrypto, signature

RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).parent / "results")
"""Where the result JSON goes; run_all.py --quick points it elsewhere."""

TOKEN = "benchToken2024"
KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
APP_ID = "wx5823bf96d3bd56c7"
TEXTS = ["信用卡被盗刷了，请马上处理", "手机银行转账一直失败", "网点排队太久", "理财收益和宣传不符"]


def build_requests(n: int, token: str, key: str, app_id: str) -> list[tuple[dict[str, str], bytes]]:
    crypto = MessageCrypto(token, key, app_id)
    run = uuid.uuid4().int % 10**8
    requests = []
    for i in range(n):
        ts, nonce = str(int(time.time())), f"{run}{i:07d}"
        message = (
            "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
            f"<FromUserName><![CDATA[o_bench_{i % 97}]]></FromUserName>"
            f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{TEXTS[i % len(TEXTS)]}（{i}）]]></Content>"
            f"<MsgId>{run}{i:010d}</MsgId></xml>"
        ).encode()
        encrypted, msg_signature = crypto.seal(message, ts, nonce)
        query = {
            "signature": signature(token, ts, nonce),
            "timestamp": ts,
            "nonce": nonce,
            "openid": f"o_bench_{i % 97}",
            "encrypt_type": "aes",
            "msg_signature": msg_signature,
        }
        body = (
            "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        )
        requests.append((query, body.encode()))
    return requests


async def fire(
    url: str, requests: list[tuple[dict[str, str], bytes]], concurrency: int
) -> tuple[list[float], int, float]:
    """(answer times in seconds, failures, wall time)."""
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            nonlocal failures
            while not queue.empty():
                query, body = queue.get_nowait()
                started = time.perf_counter()
                async with http.post(url, params=query, data=body) as response:
                    text = await response.text()
                latencies.append(time.perf_counter() - started)
                if response.status != 200 or text != "success":
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return latencies, failures, wall


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_worker(amqp: str, state_dir: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FEEDBACK_BROKER__URL": amqp,
        "FEEDBACK_RUNTIME__STATE_DIR": state_dir,
        "FEEDBACK_HTTP__PORT": str(port),
        "FEEDBACK_LOG__LEVEL": "warning",
        "FEEDBACK_CONNECTORS__WX_MAIN__TYPE": "wechat",
        "FEEDBACK_CONNECTORS__WX_MAIN__TOKEN": TOKEN,
        "FEEDBACK_CONNECTORS__WX_MAIN__ENCODING_AES_KEY": KEY,
        "FEEDBACK_CONNECTORS__WX_MAIN__APP_ID": APP_ID,
    }
    env.pop("FEEDBACK_CONFIG", None)
    command = [sys.executable, "-m", "ingest.cli", "run", "--roles", "connectors"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)


async def wait_ready(base: str, worker: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if worker.poll() is not None:
                raise SystemExit(f"worker exited with {worker.returncode}")
            try:
                async with http.get(f"{base}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("worker did not become ready")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--url", help="a running worker's webhook URL (skips starting one)")
    parser.add_argument("--token", default=TOKEN)
    parser.add_argument("--key", default=KEY)
    parser.add_argument("--app-id", default=APP_ID)
    args = parser.parse_args()
    requests = build_requests(args.requests, args.token, args.key, args.app_id)
    worker = None
    vhost = ""
    try:
        if args.url:
            url = args.url
        else:
            vhost = f"bench-wx-{uuid.uuid4().hex[:8]}"
            for ctl in (
                ["add_vhost", vhost],
                ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            ):
                subprocess.run(["rabbitmqctl", "-q", *ctl], check=True)  # noqa: ASYNC221 - set-up
            port = free_port()
            state = tempfile.mkdtemp(prefix="bench-wx-")
            worker = start_worker(args.amqp.rstrip("/") + f"/{vhost}", state, port)
            base = f"http://127.0.0.1:{port}"
            await wait_ready(base, worker)
            url = f"{base}/webhooks/wechat/wx_main"
            await fire(url, build_requests(50, args.token, args.key, args.app_id), 10)  # warm-up
        latencies, failures, wall = await fire(url, requests, args.concurrency)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        if vhost:
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)  # noqa: ASYNC221
    result = {
        "benchmark": "webhook_load",
        "requests": args.requests,
        "concurrency": args.concurrency,
        "failures": failures,
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p90_ms": round(percentile(latencies, 90) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "requests_per_s": round(len(latencies) / wall),
        "cores": os.cpu_count(),
        "machine": platform.platform(),
    }
    for name in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "requests_per_s", "failures"):
        print(f"{name:>15}: {result[name]}")
    if not args.url:
        out = RESULTS_DIR / "webhook_load.json"
        out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
