"""The face gallery: enrol/search/remove, model and input checks, IVF, crash safety (SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import write_identity_crops, write_tiny_checkpoint
from faceforge.deploy.gallery import Gallery
from faceforge.errors import UserError

DIM = 32


def unit(rng, n, dim=DIM):
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def near(x, rng, noise=0.2):
    y = x + noise * rng.normal(size=x.shape).astype(np.float32) / np.sqrt(x.shape[-1])
    return y / np.linalg.norm(y, axis=-1, keepdims=True)


@pytest.fixture
def gallery(tmp_path):
    g = Gallery.create(tmp_path / "g", "model-a", DIM, checkpoint_every=8)
    yield g
    g.close()


def test_enroll_search_remove(gallery):
    rng = np.random.default_rng(0)
    centres = unit(rng, 20)
    for i, c in enumerate(centres):
        srcs = [f"img{i}_{k}.jpg" for k in range(3)]
        ids = gallery.enroll(f"person {i}", near(np.repeat(c[None], 3, 0), rng), srcs)
        assert len(ids) == 3
    assert len(gallery) == 60
    assert gallery.identities()[0] == ("person 0", 3)
    probes = near(centres, rng)
    for group in ("max", "mean"):
        res = gallery.search(probes, k=5, group=group)
        assert [r[0].identity for r in res] == [f"person {i}" for i in range(20)]
        assert all(len(r) == 5 for r in res)
        assert all(r[0].score >= r[1].score for r in res)
    # mean grouping is the exact mean cosine over the identity's images
    top = gallery.search(probes[:1], k=1, group="mean")[0][0]
    assert top.score == pytest.approx(float((gallery.vectors_of("person 0") @ probes[0]).mean()), abs=1e-5)
    assert top.images == 3 and top.best_source.startswith("img0_")
    assert gallery.remove("person 0") == 3
    assert gallery.remove("person 0") == 0
    assert len(gallery) == 57
    assert all(m.identity != "person 0" for m in gallery.search(probes[:1], k=20)[0])


def test_refuses_mixing_and_bad_input(gallery):
    rng = np.random.default_rng(1)
    with pytest.raises(UserError, match="models cannot be mixed"):
        gallery.enroll("a", unit(rng, 1), model="model-b")
    with pytest.raises(UserError, match="models cannot be mixed"):
        gallery.search(unit(rng, 1), model="model-b")
    with pytest.raises(UserError, match="width 16"):
        gallery.enroll("a", unit(rng, 1, 16))
    with pytest.raises(UserError, match="NaN"):
        gallery.enroll("a", np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(UserError, match="all-zero"):
        gallery.enroll("a", np.zeros((1, DIM), np.float32))
    for bad in ("", "a\x00b", "x" * 300, 5, "a/b", "a\\b", "..", ".hidden", " lead", "trail ", "a?b",
                "a%2Fb"):
        with pytest.raises(UserError, match="identity"):
            gallery.enroll(bad, unit(rng, 1))
    # identities never get path meaning: a path-looking id is refused (documented character set)
    with pytest.raises(UserError, match="identity"):
        gallery.enroll("../../etc/passwd", unit(rng, 1), model="model-a")
    assert not (gallery.path.parent.parent / "etc").exists()
    gallery.enroll("Jos\u00e9 \u00c1ngel_2.b-c", unit(rng, 1), model="model-a")  # any script's letters
    assert gallery.identities() == [("Jos\u00e9 \u00c1ngel_2.b-c", 1)]
    assert gallery.enroll("Jose\u0301 \u00c1ngel_2.b-c", unit(rng, 1))  # NFD: the same identity
    assert gallery.identities() == [("Jos\u00e9 \u00c1ngel_2.b-c", 2)]
    assert gallery.remove("Jose\u0301 \u00c1ngel_2.b-c") == 2
    gallery.enroll("x", unit(rng, 1))
    assert len(gallery) == 1
    with pytest.raises(UserError, match="already exists"):
        Gallery.create(gallery.path, "model-a", DIM)
    with pytest.raises(UserError, match="not a gallery"):
        Gallery(gallery.path.parent / "nothing")


def test_reopen_and_corrupt_checkpoint_rebuilds(tmp_path):
    rng = np.random.default_rng(2)
    x = unit(rng, 40)
    with Gallery.create(tmp_path / "g", "m", DIM, checkpoint_every=10) as g:
        for i in range(0, 40, 4):
            g.enroll(f"id{i}", x[i:i + 4])
        g.remove("id0")
    files = sorted(p for p in (tmp_path / "g").iterdir() if p.name.startswith("index-"))
    assert len(files) == 1  # older checkpoints were cleaned up
    with Gallery(tmp_path / "g") as g:
        assert len(g) == 36 and not g.rebuilt
        assert g.search(x[5], k=1)[0][0].identity == "id4"
    data = bytearray(files[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    files[0].write_bytes(bytes(data))
    with Gallery(tmp_path / "g") as g:
        assert g.rebuilt and len(g) == 36
        assert g.search(x[5], k=1)[0][0].identity == "id4"
    files[0].unlink(missing_ok=True)
    with Gallery(tmp_path / "g") as g:
        assert len(g) == 36


def test_ivf_beyond_threshold(tmp_path):
    rng = np.random.default_rng(3)
    x = unit(rng, 600)
    with Gallery.create(tmp_path / "g", "m", DIM, ivf_threshold=200, nprobe=8, checkpoint_every=10_000) as g:
        g.enroll_many([f"id{i // 2}" for i in range(600)], x)
        assert g.kind == "flat"
        g.checkpoint()
        assert g.kind == "ivf" and len(g) == 600
        g.enroll("late", unit(rng, 2))
        g.remove("id1")
    with Gallery(tmp_path / "g") as g:
        assert g.kind == "ivf" and len(g) == 600
        res = g.search(near(x[::10], rng, 0.1), k=1)
        hits = np.mean([r[0].identity == f"id{i * 5}" for i, r in enumerate(res) if i * 5 != 1])
        assert hits > 0.9


def test_two_handles_see_each_other(tmp_path):
    rng = np.random.default_rng(4)
    a = Gallery.create(tmp_path / "g", "m", DIM, checkpoint_every=3)
    b = Gallery(tmp_path / "g")
    v = unit(rng, 6)
    a.enroll("x", v[:2])
    b.enroll("y", v[2:4])
    a.enroll("z", v[4:])  # a checkpoints after b's write
    assert len(b) == 6 and b.search(v[5], k=1)[0][0].identity == "z"
    assert b.remove("x") == 2
    assert len(a) == 4 and a.search(v[0], k=3)[0][0].identity != "x"
    a.close()
    b.close()


def test_concurrent_threads_enroll_and_search(gallery):
    rng = np.random.default_rng(5)
    vecs = unit(rng, 160)
    errors = []

    def writer(w):
        try:
            for i in range(20):
                j = w * 20 + i
                gallery.enroll(f"w{w}-{i}", vecs[j][None])
                # what was just committed is immediately searchable from this thread
                assert gallery.search(vecs[j], k=1)[0][0].identity == f"w{w}-{i}"
        except BaseException as e:  # noqa: BLE001 - collected for the main thread
            errors.append(e)

    def reader():
        try:
            for _ in range(40):
                for r in gallery.search(vecs[:8], k=3):
                    assert all(m.score <= 1.0001 for m in r)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(gallery) == 160 and len(gallery.identities()) == 160


CHILD = textwrap.dedent("""
    import sys, numpy as np
    from faceforge.deploy.gallery import Gallery
    g = Gallery(sys.argv[1])
    start = int(sys.argv[2])
    for i in range(start, start + 100000):
        x = np.random.default_rng(i).normal(size=(4, 32)).astype(np.float32)
        g.enroll(f"batch{i}", x, [f"b{i}_{k}" for k in range(4)])
        if i % 5 == 4 and i - 2 >= start:  # only this run's own batches
            g.remove(f"batch{i - 2}")
""")


def _check_consistent(path: Path) -> set[str]:
    with Gallery(path) as g:
        ids = dict(g.identities())
        assert len(g) == sum(ids.values())  # the index holds exactly the committed rows
        assert set(ids.values()) <= {4}  # a batch is all there or not at all
        for name in list(ids)[-5:]:
            i = int(name[5:])
            x = np.random.default_rng(i).normal(size=(4, 32)).astype(np.float32)
            top = g.search(x[2], k=1)[0][0]
            assert top.identity == name and top.score == pytest.approx(1.0, abs=1e-4)
        return set(ids)


def test_sigkill_mid_enroll_loses_nothing_committed(tmp_path):
    path = tmp_path / "g"
    Gallery.create(path, "m", 32, checkpoint_every=6).close()
    rng = np.random.default_rng(6)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    nxt, kills, present = 0, 0, set()
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(nxt)], env=env)
        time.sleep(0.8 + rng.uniform(0, 0.6))  # imports take most of the first ~0.5 s
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        now = _check_consistent(path)
        assert present <= now  # nothing committed by an earlier run went missing
        present = now
        nxt = max([nxt] + [int(n[5:]) + 1 for n in now])
    assert kills >= 5 and nxt > 0
    leftovers = [p.name for p in path.iterdir() if p.name.startswith("index-")]
    assert len(leftovers) <= 2


# ------------------------------------------------------------------ idempotent, crash-safe enrolment


@pytest.fixture(scope="module")
def faces_folder(tmp_path_factory):
    """A tiny checkpoint and 4 identity folders of 3 synthetic aligned crops each."""
    import cv2

    root = tmp_path_factory.mktemp("enrol")
    write_tiny_checkpoint(root / "tiny.ckpt")
    write_identity_crops(root / "ids", seed=2, prefix="p")
    cv2.imwrite(str(root / "blank.png"), np.full((160, 160, 3), 90, np.uint8))
    return root


def _new_gallery(root: Path, name: str) -> Path:
    from faceforge.deploy.commands import create_gallery

    create_gallery(root / name, root / "tiny.ckpt")
    return root / name


def test_enrol_twice_adds_nothing(faces_folder):
    from faceforge.deploy.commands import enroll_files

    g = _new_gallery(faces_folder, "twice")
    first = enroll_files(g, faces_folder / "tiny.ckpt", None, [faces_folder / "ids"], aligned=True)
    assert first["enrolled"] == 12 and first["already"] == 0
    again = enroll_files(g, faces_folder / "tiny.ckpt", None, [faces_folder / "ids"], aligned=True)
    assert again["enrolled"] == 0 and again["already"] == 12
    # the same bytes under another name are the same image
    copy = faces_folder / "copy.png"
    copy.write_bytes((faces_folder / "ids" / "p1" / "0.png").read_bytes())
    r = enroll_files(g, faces_folder / "tiny.ckpt", "p1", [copy], aligned=True)
    assert r["enrolled"] == 0 and r["already"] == 1
    with Gallery(g) as gal:
        assert dict(gal.identities()) == {f"p{j}": 3 for j in range(4)}


def test_enrol_without_a_usable_face_is_an_error(faces_folder):
    from faceforge.deploy.commands import enroll_files

    g = _new_gallery(faces_folder, "noface")
    (faces_folder / "text.png").write_text("not an image")
    with pytest.raises(UserError, match="no usable face in any of the 2 files"):
        enroll_files(g, faces_folder / "tiny.ckpt", "x", [faces_folder / "blank.png",
                                                          faces_folder / "text.png"])
    with pytest.raises(UserError, match="identity"):
        enroll_files(g, faces_folder / "tiny.ckpt", "a/b", [faces_folder / "blank.png"])
    with Gallery(g) as gal:
        assert len(gal) == 0


# The interrupted enrolment SIGKILLs itself right after the third identity's transaction committed
# (before the index checkpoint and before the fourth identity): a fixed point, no polling.
KILL_AFTER_THIRD_ENROL = """
import os, signal, sys
from faceforge.deploy import gallery
enroll, calls = gallery.Gallery.enroll, []
def killing_enroll(self, *a, **k):
    ids = enroll(self, *a, **k)
    calls.append(len(ids))
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return ids
gallery.Gallery.enroll = killing_enroll
from faceforge.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill9_mid_enrol_then_rerun_adds_nothing_twice(faces_folder):
    g = _new_gallery(faces_folder, "killed")
    args = ["gallery", "enroll", str(g), str(faces_folder / "ids"),
            "--model", str(faces_folder / "tiny.ckpt"), "--aligned"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_THIRD_ENROL, *args], env=env, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    with Gallery(g) as gal:
        assert dict(gal.identities()) == {"p0": 3, "p1": 3, "p2": 3}  # committed before the kill
    done = subprocess.run([sys.executable, "-m", "faceforge", *args], env=env, timeout=300,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "enrolled 3 images of 1 identity; skipped 9 already enrolled" in done.stdout
    with Gallery(g) as gal:
        assert dict(gal.identities()) == {f"p{j}": 3 for j in range(4)} and len(gal) == 12


# ------------------------------------------------------------------ integrity and privacy on disk


def test_damaged_database_is_one_line(tmp_path, capsys):
    from faceforge.cli.main import main

    rng = np.random.default_rng(7)
    with Gallery.create(tmp_path / "g", "m", DIM) as g:
        g.enroll("a", unit(rng, 2))
    db = tmp_path / "g" / "gallery.sqlite"
    db.write_bytes(b"garbage" * 100 + db.read_bytes()[700:])
    with pytest.raises(UserError, match="damaged"):
        Gallery(tmp_path / "g")
    assert main(["gallery", "list", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert "damaged" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    # damage inside the table pages: found by a later read, still a one-line error
    with Gallery.create(tmp_path / "h", "m", 512) as g:
        for i in range(50):
            g.enroll(f"id{i}", rng.normal(size=(4, 512)).astype(np.float32))
    db = tmp_path / "h" / "gallery.sqlite"
    data = bytearray(db.read_bytes())
    data[len(data) // 2:len(data) // 2 + 4096] = b"\xab" * 4096
    db.write_bytes(bytes(data))
    with pytest.raises(UserError, match="damaged"), Gallery(tmp_path / "h") as g:
        g.search(rng.normal(size=512).astype(np.float32), k=3)
        g.identities()


def test_rebuilt_index_is_kept(tmp_path):
    rng = np.random.default_rng(8)
    x = unit(rng, 12)
    with Gallery.create(tmp_path / "g", "m", DIM) as g:
        g.enroll_many([f"id{i}" for i in range(12)], x)
    (ckpt,) = [p for p in (tmp_path / "g").iterdir() if p.name.startswith("index-")]
    ckpt.write_bytes(ckpt.read_bytes()[:-40] + b"\0" * 40)
    # other processes (checkpoint files carry the writer's pid): the first rebuilds, the next loads
    probe = "import sys; from faceforge.deploy.gallery import Gallery; g = Gallery(sys.argv[1]); " \
            "print(g.rebuilt, len(g)); g.close()"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    seen = [subprocess.run([sys.executable, "-c", probe, str(tmp_path / "g")], env=env, check=True,
                           capture_output=True, text=True, timeout=120).stdout.split() for _ in range(2)]
    assert seen == [["True", "12"], ["False", "12"]]
    for _ in range(2):
        with Gallery(tmp_path / "g") as g:
            assert not g.rebuilt and len(g) == 12
            assert g.search(x[3], k=1)[0][0].identity == "id3"


def test_files_are_owner_only_and_removal_erases(tmp_path):
    rng = np.random.default_rng(9)
    secret = unit(rng, 1)
    with Gallery.create(tmp_path / "g", "m", DIM, checkpoint_every=1000) as g:
        g.enroll("keep", unit(rng, 3), ["k0", "k1", "k2"])
        g.enroll("gone", secret, ["/home/someone/private.jpg"])
        g.checkpoint()
        needle = g.vectors_of("gone").tobytes()[:64]
        assert any(needle in f.read_bytes() for f in (tmp_path / "g").iterdir())  # the check can fail
        assert g.remove("gone") == 1
        assert all(m.identity != "gone" for m in g.search(secret, k=5)[0])
        for f in (tmp_path / "g").iterdir():  # no file keeps the removed embedding or its source
            data = f.read_bytes()
            assert needle not in data and b"private.jpg" not in data, f.name
        modes = {f.name: f.stat().st_mode & 0o777 for f in (tmp_path / "g").iterdir()}
    assert (tmp_path / "g").stat().st_mode & 0o777 == 0o700
    assert "gallery.sqlite-wal" in modes and set(modes.values()) == {0o600}, modes
    assert {f.stat().st_mode & 0o777 for f in (tmp_path / "g").iterdir()} == {0o600}
