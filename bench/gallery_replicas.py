"""Replicas on one PostgreSQL gallery: start-up at N stored embeddings, replication lag, and
1 vs 2 `faceforge serve` replicas under identify load.

    .venv/bin/python bench/gallery_replicas.py --sizes 100000 1000000 --model dlib:resnet --seconds 30

Without ``--server-url`` a throw-away PostgreSQL 15 cluster is made in a temp folder (initdb +
pg_ctl, as in the tests, but with ``fsync`` on). Embeddings are synthetic unit vectors of
``--model``'s width, bulk-loaded with ``COPY ... FROM STDIN (FORMAT BINARY)``, 5 per identity.

* start-up: a fresh process opens the gallery (reads every row, builds its FAISS index: flat up
  to 100k rows, IVF beyond) and answers one search; seconds and the process's peak RSS.
* lag: process A enrols one image every ``--lag-every`` s; this process (B, ``follow=True``) records
  the time from A's acknowledgement to B's index holding it; NOTIFY, and polling only.
* replicas: ``faceforge serve`` processes on the ``--sizes[0]`` gallery; ``--clients`` threads send
  identify requests (32 real CelebA photos, detected, aligned and embedded by the service; top 5)
  round-robin for ``--seconds`` s after a warm-up; 1, then 2, then 1 replica again.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

OPEN = """
import json, resource, sys, time
import numpy as np
t = time.perf_counter()
from faceforge.deploy.gallery import Gallery
t_import = time.perf_counter() - t
t = time.perf_counter()
g = Gallery(sys.argv[1])
t_open = time.perf_counter() - t
g.search(np.ones(g.dim, np.float32), k=5)
t_search = time.perf_counter() - t
print(json.dumps({"images": len(g), "kind": g.kind, "open_s": round(t_open, 2), "first_search_s":
                  round(t_search, 2), "import_s": round(t_import, 2),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""

PHASES = """
import json, sys, time
import numpy as np
from faceforge.deploy import gallery_index
from faceforge.deploy.gallery_postgres import PostgresStore
store, out = PostgresStore(sys.argv[1]), {}
def timed(name, fn):
    t = time.perf_counter()
    result = fn()
    out[name + "_s"] = round(time.perf_counter() - t, 2)
    return result
def rows(sql, args=()):
    sql = "SELECT vector_id, embedding FROM vectors WHERE removed_gen IS NULL " + sql
    return list(store.vectors(sql, args, 128))
store.begin(False)
ids = timed("ids", lambda: [r[0] for r in store.execute("SELECT vector_id FROM vectors ORDER BY vector_id")])
n = len(ids)
take = 40 * gallery_index.ivf_lists(n)
picks = [ids[i] for i in np.sort(np.random.default_rng(0).choice(n, take, replace=False))]
train = timed("sample", lambda: np.concatenate([v for s in range(0, len(picks), 900) for _, v in rows(
    f"AND vector_id IN ({','.join('?' * len(picks[s:s + 900]))})", tuple(picks[s:s + 900]))]))
index = timed("train", lambda: gallery_index.new_index(128, n, 100_000, train))
chunks = timed("fetch", lambda: rows("ORDER BY vector_id"))
timed("add", lambda: [index.add_with_ids(v, i) for i, v in chunks])
print(json.dumps({"phases": n, **out}))
"""

ENROL = """
import sys, time
import numpy as np
from faceforge.deploy.gallery import Gallery
g = Gallery(sys.argv[1])
rng = np.random.default_rng(1)
for i in range(int(sys.argv[2])):
    time.sleep(float(sys.argv[3]))
    g.enroll(f"lag{i}", rng.normal(size=(1, g.dim)).astype(np.float32))
    print(g.generation, time.time(), flush=True)
"""


def model_identity(model: str) -> tuple[str, int]:
    from faceforge.deploy.commands import analyzer_model_id, load_analyzer

    analyzer = load_analyzer(model, "retinaface", "cpu")
    h, w = (int(v) for v in analyzer.card.input_size)
    dim = int(analyzer.embed_crops(np.zeros((1, h, w, 3), np.uint8)).shape[1])
    return analyzer_model_id(analyzer), dim


def bulk_load(url: str, model_id: str, dim: int, n: int, ivf_threshold: int = 100_000) -> float:
    """A gallery of ``n`` synthetic rows (generation 1), loaded with binary COPY; seconds."""
    import psycopg

    from faceforge.deploy.gallery import Gallery

    Gallery.create(url, model_id, dim, ivf_threshold=ivf_threshold).close()
    t = time.perf_counter()
    rng = np.random.default_rng(0)
    with psycopg.connect(url) as db:
        with db.cursor() as cur, cur.copy("COPY vectors (identity, source, content, model_id, added_gen, "
                                          "added_at, embedding) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "text", "text", "int8", "float8", "bytea"])
            now = time.time()
            for start in range(0, n, 100_000):
                x = rng.normal(size=(min(100_000, n - start), dim)).astype(np.float32)
                x /= np.linalg.norm(x, axis=1, keepdims=True)
                for i, row in enumerate(x, start):
                    copy.write_row((f"id{i // 5}", "", f"c{i}", model_id, 1, now, row.tobytes()))
        db.execute("UPDATE meta SET value = '1' WHERE key = 'generation'")
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("VACUUM ANALYZE vectors")
    return time.perf_counter() - t


def startup(url: str) -> dict:
    out = subprocess.run([sys.executable, "-c", OPEN, url], check=True, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="2"))
    return json.loads(out.stdout.strip().splitlines()[-1])


def pct(xs, q) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def lag(url: str, count: int, every: float, poll_only: bool) -> dict:
    from faceforge.deploy.gallery import Gallery

    b = Gallery(url, follow=True, poll_interval=1.0)
    if poll_only:  # no LISTEN: the follower wakes every poll interval only
        b.store.wait_for_change = lambda timeout, stop: stop.wait(timeout)
    changes: list[tuple[int, float]] = []  # (generation, when first seen) as it moves
    watching = threading.Event()

    def watch():
        while not watching.is_set():
            if not changes or b.generation != changes[-1][0]:
                changes.append((b.generation, time.time()))
            time.sleep(0.0005)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    proc = subprocess.Popen([sys.executable, "-c", ENROL, url, str(count), str(every)],
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    acks = [line.split() for line in proc.stdout]
    proc.wait()
    time.sleep(2.5)
    watching.set()
    w.join()
    b.close()
    lags = []
    for g, t in acks:  # the first time b's index reached (or passed) the acknowledged generation
        when = next((w for gen, w in changes if gen >= int(g)), None)
        if when is not None:
            lags.append(1000 * max(0.0, when - float(t)))
    return {"mode": "poll 1 s" if poll_only else "NOTIFY", "enrolments": len(acks), "replayed": len(lags),
            "p50_ms": round(pct(lags, 50), 1), "p99_ms": round(pct(lags, 99), 1),
            "max_ms": round(max(lags), 1)}


def replicas(url: str, model: str, count: int, seconds: float, clients: int, celeba: Path) -> dict:
    import httpx

    from pg_server import free_port

    photos = sorted(Path(celeba).glob("*/*.jpg"))[::50][:32]  # real photos: detect, align, embed
    bodies = [{"image": base64.b64encode(f.read_bytes()).decode(), "top_k": 5} for f in photos]
    procs, urls = [], []
    t0 = time.perf_counter()
    for _ in range(count):
        port = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "faceforge", "serve", "--gallery", url, "--model", model,
             "--port", str(port), "--insecure-no-auth"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=dict(os.environ, OMP_NUM_THREADS="1")))
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for u in urls:
            while True:
                try:
                    if httpx.get(u + "/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
        ready_s = time.perf_counter() - t0
        lat, codes, lock = [], {}, threading.Lock()
        stop_at = [0.0]

        def client(w):
            with httpx.Client(timeout=120) as c:
                n = w
                while time.perf_counter() < stop_at[0]:
                    t = time.perf_counter()
                    r = c.post(urls[n % count] + "/v1/identify", json=bodies[n % len(bodies)])
                    with lock:
                        lat.append(time.perf_counter() - t)
                        codes[r.status_code] = codes.get(r.status_code, 0) + 1
                    n += 1

        for warm in (True, False):
            lat.clear()
            codes.clear()
            stop_at[0] = time.perf_counter() + (min(5.0, seconds / 4) if warm else seconds)
            t = time.perf_counter()
            threads = [threading.Thread(target=client, args=(w,)) for w in range(clients)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            wall = time.perf_counter() - t
        return {"replicas": count, "ready_s": round(ready_s, 1), "requests": len(lat),
                "req_per_s": round(len(lat) / wall, 2), "p50_ms": round(1000 * pct(lat, 50), 1),
                "p99_ms": round(1000 * pct(lat, 99), 1), "codes": codes}
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server-url", default=None, help="postgresql://... of a server to use (a database "
                   "per size is created there); default: a throw-away local cluster")
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--model", default="dlib:resnet")
    p.add_argument("--ivf-threshold", type=int, default=100_000, help="as 'gallery create' (flat up to it)")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--lag-count", type=int, default=100)
    p.add_argument("--lag-every", type=float, default=0.05)
    p.add_argument("--celeba", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
                   / "celeba299", help="identify requests: 32 of these photos (../shared/data/celeba299)")
    p.add_argument("--skip", nargs="*", default=[], choices=["startup", "phases", "lag", "replicas"])
    args = p.parse_args()

    import psycopg

    from pg_server import PostgresServer, server_bindir

    server = None
    if args.server_url is None:
        server = PostgresServer(server_bindir(), fsync=True).start()
        base = server.url()
    else:
        base = args.server_url
    cpu = dict(line.split(":", 1) for line in subprocess.run(["lscpu"], capture_output=True, text=True)
               .stdout.splitlines() if ":" in line)
    print("cpu:", cpu["Model name"].strip(), "x", cpu["CPU(s)"].strip(), "| flags:", cpu["Flags"].strip())
    print("load average:", open("/proc/loadavg").read().strip())
    try:
        model_id, dim = model_identity(args.model)
        print(json.dumps({"model": args.model, "model_id": model_id, "dim": dim}))
        urls = {}
        for n in args.sizes:
            with psycopg.connect(base, autocommit=True) as db:
                db.execute(f"DROP DATABASE IF EXISTS bench_{n}")
                db.execute(f"CREATE DATABASE bench_{n}")
            urls[n] = base.rsplit("/", 1)[0] + f"/bench_{n}"
            copy_s = bulk_load(urls[n], model_id, dim, n, args.ivf_threshold)
            print(json.dumps({"size": n, "copy_s": round(copy_s, 1)}), flush=True)
            if "startup" not in args.skip:
                for run in range(2):
                    print(json.dumps({"size": n, "run": run, **startup(urls[n])}), flush=True)
            if "phases" not in args.skip and n > args.ivf_threshold and dim == 128:  # an IVF start-up
                out = subprocess.run([sys.executable, "-c", PHASES, urls[n]], check=True, capture_output=True,
                                     text=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
                print(out.stdout.strip(), flush=True)
        first = urls[args.sizes[0]]
        if "lag" not in args.skip:
            for poll_only in (False, True):
                res = lag(first, args.lag_count, args.lag_every, poll_only)
                print(json.dumps({"size": args.sizes[0], **res}), flush=True)
        if "replicas" not in args.skip:
            for count in (1, 2, 1):
                res = replicas(first, args.model, count, args.seconds, args.clients, args.celeba)
                print(json.dumps({"size": args.sizes[0], "model": args.model, **res}), flush=True)
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
