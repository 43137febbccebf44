"""The gallery in PostgreSQL (a real server, ``postgres`` fixture): the same logic as the folder,
replicas that see each other's writes, removals never answered, reconnection after a restart."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from faceforge.deploy.gallery import Gallery, GalleryUnavailable, gallery_exists
from faceforge.errors import UserError

DIM = 32


def unit(rng, n, dim=DIM):
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def until(condition, what: str, limit_s: float = 30.0):
    """Wait for ``condition()`` (a correctness bound, generous on a loaded machine, not a timing)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {limit_s} s: {what}"
        time.sleep(0.01)


@pytest.fixture
def url(postgres):
    return postgres.new_database()


def test_same_logic_as_the_folder(url):
    rng = np.random.default_rng(0)
    centres = unit(rng, 10)
    assert not gallery_exists(url)
    with Gallery.create(url, "model-a", DIM) as g:
        assert gallery_exists(url)
        for i, c in enumerate(centres):
            assert len(g.enroll(f"person {i}", np.stack([c, c + 0.01]), [f"s{i}a", f"s{i}b"],
                                contents=[f"h{i}a", f"h{i}b"])) == 2
        # idempotent: an image the identity holds is not added again, a repeat in a batch neither
        assert g.enroll("person 0", centres[:1], contents=["h0a"]) == []
        assert len(g.enroll_many(["z", "z"], unit(rng, 2), contents=["same", "same"])) == 1
        assert g.enrolled_contents("person 1", ["h1a", "nope"]) == {"h1a"}
        res = g.search(centres, k=3)
        assert [r[0].identity for r in res] == [f"person {i}" for i in range(10)]
        top = g.search(centres[:1], k=1, group="mean")[0][0]
        assert top.images == 2 and top.score == pytest.approx(
            float((g.vectors_of("person 0") @ centres[0]).mean()), abs=1e-5)
        with pytest.raises(UserError, match="models cannot be mixed"):
            g.enroll("x", centres[:1], model="model-b")
        with pytest.raises(UserError, match="width 31"):
            g.search(np.ones((1, 31), np.float32))
        assert g.remove("person 3") == 2 and g.remove("person 3") == 0
        assert all(m.identity != "person 3" for m in g.search(centres[3], k=10)[0])
        info = g.info()
        assert info["images"] == 19 and info["identities"] == 10 and info["model_id"] == "model-a"
        assert dict(g.identities())["person 4"] == 2 and len(g) == 19
        # privacy: the removed rows (tombstones) keep no embedding, source, content hash or identity
        left = g.store.execute("SELECT identity, length(embedding), source, content FROM vectors "
                               "WHERE removed_gen IS NOT NULL").fetchall()
        assert left == [("", 0, "", ""), ("", 0, "", "")]
    with pytest.raises(UserError, match="already exists"):
        Gallery.create(url, "model-a", DIM)
    with Gallery(url) as g:  # a new replica builds its index from the database
        assert len(g) == 19 and g.search(centres[5], k=1)[0][0].identity == "person 5"


def test_not_a_gallery_and_unreachable_are_one_line(postgres):
    with pytest.raises(UserError, match="not a gallery"):
        Gallery(postgres.new_database())
    secret = f"postgresql://postgres:hunter2@127.0.0.1:{postgres.port + 1}/nowhere"
    with pytest.raises(GalleryUnavailable) as e:
        Gallery(secret)
    assert "hunter2" not in str(e.value) and "***" in str(e.value) and "\n" not in str(e.value)
    for bad in ("postgresql://u:hunter2@[::1/x", f"postgresql://127.0.0.1:{postgres.port}/x?password=hunter2&no=1"):
        with pytest.raises(UserError) as e:  # libpq quotes a malformed URL: never with its password
            Gallery(bad)
        assert "hunter2" not in str(e.value) and "\n" not in str(e.value)


def test_replicas_see_each_other(url):
    rng = np.random.default_rng(1)
    v = unit(rng, 6)
    a = Gallery.create(url, "m", DIM)
    b = Gallery(url, follow=True, poll_interval=0.2)
    try:
        a.enroll("x", v[:2])
        gen = a.generation
        until(lambda: b.generation >= gen, "the follower replays a's enrolment")  # NOTIFY, no request
        assert b.search(v[1], k=1)[0][0].identity == "x"
        b.enroll("y", v[2:4])
        assert a.search(v[3], k=1)[0][0].identity == "y"  # a search catches up before answering
        assert b.remove("x") == 2
        assert all(m.identity != "x" for m in a.search(v[0], k=5)[0])
    finally:
        a.close()
        b.close()


def test_a_removal_is_never_answered_even_before_replay(url):
    """A hit whose removal committed after this replica's last replay is dropped at the database
    check that precedes every answer."""
    rng = np.random.default_rng(2)
    v = unit(rng, 4)
    a = Gallery.create(url, "m", DIM)
    b = Gallery(url)
    try:
        a.enroll("gone", v[:2])
        a.enroll("kept", v[2:])
        assert b.search(v[0], k=1)[0][0].identity == "gone"
        b.refresh = lambda: None  # b's index stays at the old generation: only the check is left
        assert a.remove("gone") == 2
        assert b.index.ntotal == 4  # the removed vectors are still in b's index...
        assert [m.identity for m in b.search(v[0], k=5)[0]] == ["kept"]  # ...and never answered
    finally:
        a.close()
        b.close()


def test_concurrent_same_image_through_two_replicas_stored_once(url):
    rng = np.random.default_rng(3)
    v = unit(rng, 1)
    handles = [Gallery.create(url, "m", DIM)] + [Gallery(url) for _ in range(3)]
    results, errors = [], []
    gate = threading.Barrier(8)

    def enrol(g):
        try:
            gate.wait()
            results.append(g.enroll("same", v, contents=["sha256-of-the-image"]))
        except BaseException as e:  # noqa: BLE001 - collected for the main thread
            errors.append(e)

    threads = [threading.Thread(target=enrol, args=(handles[i % 4],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert sorted(len(r) for r in results) == [0] * 7 + [1]
    for g in handles:
        assert g.identities() == [("same", 1)] and len(g) == 1
        g.close()


def test_ivf_beyond_threshold_in_every_replica(url):
    rng = np.random.default_rng(4)
    x = unit(rng, 300)
    with Gallery.create(url, "m", DIM, ivf_threshold=200, nprobe=64) as a, Gallery(url) as b:
        a.enroll_many([f"id{i // 2}" for i in range(300)], x)
        assert a.kind == "ivf" and len(b) == 300 and b.kind == "ivf"
        res = b.search(x[::10], k=1)
        assert np.mean([r[0].identity == f"id{i * 5}" for i, r in enumerate(res)]) > 0.9
    with Gallery(url) as c:  # built as IVF at start-up
        assert c.kind == "ivf" and len(c) == 300


def test_database_restart_then_reconnect(postgres):
    url = postgres.new_database()
    rng = np.random.default_rng(5)
    v = unit(rng, 4)
    with Gallery.create(url, "m", DIM) as g, Gallery(url, follow=True, poll_interval=0.2) as f:
        g.enroll("before", v[:2])
        postgres.stop()
        try:
            with pytest.raises(GalleryUnavailable, match="database unavailable"):
                g.search(v[0])
            with pytest.raises(GalleryUnavailable):
                g.enroll("during", v[2:3])
        finally:
            postgres.resume()
        g.enroll("after", v[3:])  # the same handles, reconnected by themselves
        assert dict(g.identities()) == {"before": 2, "after": 1}
        until(lambda: f.generation >= g.generation, "the follower reconnects and replays")
        assert f.search(v[3], k=1)[0][0].identity == "after" and len(f) == 3


def test_cli_on_a_database(url, tiny_mfn_ckpt, tmp_path, capsys):
    from conftest import write_identity_crops
    from faceforge.cli.main import main

    write_identity_crops(tmp_path / "ids", seed=4, prefix="p", identities=2, per=2)
    model = ["--model", str(tiny_mfn_ckpt)]
    assert main(["gallery", "create", url, *model]) == 0
    assert main(["gallery", "enroll", url, str(tmp_path / "ids"), *model, "--aligned", "--quiet"]) == 0
    assert "enrolled 4 images of 2 identities" in capsys.readouterr().out
    assert main(["gallery", "enroll", url, str(tmp_path / "ids"), *model, "--aligned", "--quiet"]) == 0
    assert "enrolled 0 images of 0 identities; skipped 4 already enrolled" in capsys.readouterr().out
    assert main(["gallery", "search", url, str(tmp_path / "ids" / "p1" / "0.png"), *model, "--aligned",
                 "--json"]) == 0
    assert '"identity": "p1"' in capsys.readouterr().out
    assert main(["gallery", "remove", url, "p0"]) == 0
    capsys.readouterr()
    assert main(["gallery", "list", url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["identities"] == [{"identity": "p1", "images": 2}] and listed["info"]["images"] == 2


def test_a_database_restored_from_a_backup_is_reloaded(url):
    """A generation that went back (a restore) will be reused: a replica that sees it reloads."""
    rng = np.random.default_rng(6)
    v = unit(rng, 3)
    with Gallery.create(url, "m", DIM) as a, Gallery(url) as b:
        a.enroll("kept", v[:1])
        a.enroll("lost", v[1:2])
        assert len(b) == 2
        a.store.execute("DELETE FROM vectors WHERE identity = 'lost'")  # as if restored to generation 1
        a.store.set_meta({"generation": 1})
        assert len(b) == 1 and b.generation == 1
        a.enroll("new", v[2:])  # generation 2 again, other rows
        assert dict(b.identities()) == {"kept": 1, "new": 1}
        assert b.search(v[2], k=1)[0][0].identity == "new" and len(b) == 2
