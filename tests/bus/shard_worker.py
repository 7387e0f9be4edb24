"""A shard worker as the supervisor tests run it: claims tasks from a bus queue, heartbeats
its lease (and the supervisor's liveness file) from a thread, works, completes.

Environment: BUS_URL, BUS_DATA, BUS_CONV, MEMMESH_BUS_TOKEN, BUS_LEASE, BUS_BEAT, BUS_WORK,
BUS_LOG (a file each event is appended to). A task whose body contains "crash" kills this
process on its first delivery (after claiming it, before completing); "hang" stops the
heartbeats on the first delivery and sleeps forever.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

# Beat while starting up: importing memmesh and opening the store can take longer than the
# supervisor's hang window on a loaded machine (2-3 s at load 25 on 2 cores), and a worker
# that is still starting is not hung. The main loop's own heartbeats take over below.
starting = threading.Event()


def startup_beats() -> None:
    beat_file = os.environ.get("MEMMESH_WORKER_HEARTBEAT_FILE")
    while beat_file and not starting.wait(0.3):
        Path(beat_file).touch()


threading.Thread(target=startup_beats, daemon=True).start()

from memmesh import Memory  # noqa: E402  (after the start-up heartbeats begin)
from memmesh.config import load_settings  # noqa: E402
from memmesh.errors import LeaseLostError  # noqa: E402
from memmesh.model import LOCAL_PRINCIPAL as P  # noqa: E402
from memmesh.workers import beat  # noqa: E402

name = os.environ["MEMMESH_WORKER_NAME"]
conv, token = os.environ["BUS_CONV"], os.environ["MEMMESH_BUS_TOKEN"]
lease, every, work = float(os.environ["BUS_LEASE"]), float(os.environ["BUS_BEAT"]), float(os.environ["BUS_WORK"])
settings = load_settings(None, overrides={"data_dir": os.environ["BUS_DATA"], "embeddings": {"provider": "none"}}, env={})


def log(**event: object) -> None:
    with open(os.environ["BUS_LOG"], "a") as fh:
        fh.write(json.dumps({"worker": name, "pid": os.getpid(), "at": time.time(), **event}) + "\n")


with Memory(os.environ["BUS_URL"], settings) as m:
    bus = m.service.bus
    current: dict[str, str] = {}
    silent = threading.Event()

    def heartbeats() -> None:
        while True:
            time.sleep(every)
            if silent.is_set():
                continue
            beat()
            token_now = current.get("attempt")
            if token_now:
                try:
                    bus.heartbeat(conv, token_now, worker=name, token=token, lease_s=lease, principal=P)
                    log(event="heartbeat")
                except LeaseLostError:
                    log(event="lease_lost")

    threading.Thread(target=heartbeats, daemon=True).start()
    starting.set()
    log(event="start")
    while True:
        beat()
        got = bus.claim(conv, worker=name, token=token, lease_s=lease, wait_s=every, principal=P)
        if got is None:
            continue
        current["attempt"] = got.attempt_token
        log(event="claimed", task=got.message.body, attempt=got.attempt)
        if "crash" in got.message.body and got.attempt == 1:
            log(event="crashing", task=got.message.body)
            os._exit(17)
        if "hang" in got.message.body and got.attempt == 1:
            silent.set()
            log(event="hanging", task=got.message.body)
            time.sleep(3600)
        time.sleep(work)
        try:
            bus.complete(conv, got.attempt_token, worker=name, token=token, result=f"{got.message.body} by {name}", principal=P)
            log(event="completed", task=got.message.body, attempt=got.attempt)
        except LeaseLostError:
            log(event="late_ack_refused", task=got.message.body)
        current.pop("attempt", None)
