"""Two real ``faceforge serve`` processes on one PostgreSQL gallery (a real server): what one
acknowledges the other answers, a removal is never answered again, kill -9 of a replica loses no
acknowledged enrolment, a database restart is a clean 503 and the replicas reconnect by themselves,
the same image enrolled through both at once is stored once."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from pg_server import free_port  # noqa: E402


def until(condition, what: str, limit_s: float = 60.0):
    """Wait for ``condition()`` (a generous correctness bound on a loaded machine, not a timing)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {limit_s} s: {what}"
        time.sleep(0.05)


class Replica:
    """``faceforge serve --gallery postgresql://...`` in its own process on a free loopback port."""

    def __init__(self, url: str, model: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "faceforge", "serve", "--gallery", url, "--model", model,
               "--insecure-no-auth", "--port", str(self.port), "--threshold", "0.5"]
        self.proc = subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = httpx.Client(base_url=self.base, timeout=30)

    def ready(self) -> Replica:
        def up():
            assert self.proc.poll() is None, "the replica exited"
            try:
                return self.client.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False
        until(up, "the replica serves /healthz", 120)
        return self

    def enrol(self, identity: str, image: bytes):
        return self.client.post("/v1/gallery/enroll", json={
            "identity": identity, "images": [base64.b64encode(image).decode()], "aligned": True})

    def identify(self, image: bytes, k: int = 5):
        return self.client.post("/v1/identify", json={
            "image": base64.b64encode(image).decode(), "aligned": True, "top_k": k})

    def top(self, image: bytes) -> list[str]:
        r = self.identify(image)
        assert r.status_code == 200, r.text
        return [m["identity"] for m in r.json()["faces"][0]["matches"]]

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def png(img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def cluster(postgres, tiny_mfn_ckpt):
    """(url, [replica A, replica B], images: (identity j, image k) -> PNG bytes)."""
    from faceforge.data.synthetic import SyntheticFaces
    from faceforge.deploy.commands import create_gallery

    url = postgres.new_database()
    create_gallery(url, tiny_mfn_ckpt)
    replicas = [Replica(url, str(tiny_mfn_ckpt)) for _ in range(2)]  # both start at once
    try:
        for r in replicas:
            r.ready()
        synth = SyntheticFaces(seed=5)
        images = {(j, k): png(synth.render(j, k)[0]) for j in range(40) for k in range(2)}
        yield url, replicas, images
    finally:
        for r in replicas:
            r.stop()


def stored(url: str) -> dict[str, int]:
    from faceforge.deploy.gallery import Gallery

    with Gallery(url) as g:
        return dict(g.identities())


def test_one_replica_acknowledges_the_other_answers(cluster):
    _, (a, b), images = cluster
    assert a.enrol("ann", images[0, 0]).json()["enrolled"] == 1
    assert b.top(images[0, 0])[0] == "ann"  # no wait: a search catches up before answering
    assert b.enrol("bob", images[1, 0]).json()["enrolled"] == 1
    assert a.top(images[1, 0])[0] == "bob"
    r = b.client.delete("/v1/gallery/ann")
    assert r.status_code == 200 and r.json()["removed"] == 1
    for replica in (a, b):  # acknowledged by b: never answered again, by either
        assert "ann" not in replica.top(images[0, 0])
    assert a.client.delete("/v1/gallery/ann").status_code == 404


def test_same_image_through_both_replicas_at_once_is_stored_once(cluster):
    url, (a, b), images = cluster
    gate = threading.Barrier(8)

    def enrol(i):
        gate.wait()
        r = (a, b)[i % 2].enrol("twin", images[2, 0])
        assert r.status_code == 200, r.text
        return r.json()["enrolled"]

    with ThreadPoolExecutor(8) as pool:
        enrolled = list(pool.map(enrol, range(8)))
    assert sum(enrolled) == 1
    assert stored(url)["twin"] == 1


def test_database_restart_under_load_is_503_then_reconnects(cluster, postgres):
    url, (a, b), images = cluster
    statuses, acked, lock, stop = [], [], threading.Lock(), threading.Event()

    def load(w):
        n = 0
        while not stop.is_set():
            replica = (a, b)[n % 2]
            name = f"load{w}-{n}"
            r = replica.enrol(name, images[n % 40, 0]) if n % 3 == 0 else replica.identify(images[n % 40, 0])
            with lock:
                statuses.append((r.status_code, r.json()))
                if r.status_code == 200 and "vector_ids" in r.json():
                    acked.append(name)
            n += 1

    threads = [threading.Thread(target=load, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    until(lambda: len(statuses) >= 10, "requests served before the restart")
    postgres.stop()  # fast shutdown: the replicas' connections are cut under load
    try:
        for replica in (a, b):  # while it is down: a clean 503 with the JSON error body
            for r in (replica.identify(images[0, 0]), replica.enrol("down", images[3, 0]),
                      replica.client.get("/v1/gallery")):
                assert r.status_code == 503, r.text
                assert r.json() == {"error": {
                    "code": "database_unavailable",
                    "message": "the gallery database is unavailable; retry shortly"}}
                assert r.headers["retry-after"] == "1"
    finally:
        postgres.resume()
    served = len(statuses)
    until(lambda: len(statuses) >= served + 20, "requests served after the restart")
    stop.set()
    for t in threads:
        t.join()
    for replica in (a, b):  # the same processes reconnected by themselves
        assert replica.proc.poll() is None
        assert replica.client.get("/v1/gallery").status_code == 200
    bad = [(s, body) for s, body in statuses if s != 200 and
           not (s == 503 and body["error"]["code"] == "database_unavailable")]
    assert not bad, bad[:3]
    held = stored(url)
    assert all(held.get(name) == 1 for name in acked)  # nothing acknowledged was lost
    assert "down" not in held


def test_kill9_of_a_replica_loses_no_acknowledged_enrolment(cluster):  # last: it kills replica a
    url, (a, b), images = cluster
    acked, lock, stop = [], threading.Lock(), threading.Event()

    def client(w):
        for j in range(10 + w, 40, 4):
            if stop.is_set():
                return
            try:
                r = a.enrol(f"k{j}", images[j, 1])
            except httpx.HTTPError:  # the replica is gone: this one was never acknowledged
                return
            if r.status_code == 200:
                with lock:
                    acked.append(f"k{j}")

    threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    until(lambda: len(acked) >= 4, "a few enrolments acknowledged")
    a.proc.send_signal(signal.SIGKILL)  # mid-enrolment: 4 clients keep requests in flight
    a.proc.wait()
    stop.set()
    for t in threads:
        t.join()
    held = stored(url)
    assert all(held.get(i) == 1 for i in acked), (acked, held)  # every acknowledged one, once
    for name in acked:
        j = int(name[1:])
        assert b.top(images[j, 1])[0] == name  # and the surviving replica answers it
    # enrolling everything again through b adds only what was never committed
    again = [b.enrol(f"k{j}", images[j, 1]).json() for j in range(10, 40)]
    assert all(r["enrolled"] + r["already"] == 1 for r in again)
    assert sum(r["already"] for r in again) >= len(acked)
    assert {f"k{j}" for j in range(10, 40)} <= set(stored(url)) and set(stored(url).values()) == {1}
