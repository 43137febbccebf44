import csv

import numpy as np
import pytest

from faceforge.align.transform import template_points
from faceforge.data.dataset import open_source
from faceforge.data.readers.synthetic import parse_spec
from faceforge.data.synthetic import (
    FLIP_PERMUTATION_88,
    LANDMARK_GROUPS,
    NUM_LANDMARKS,
    SyntheticFaces,
    five_from_88,
    identity_name,
    image_name,
    landmarks_header,
    make_identity,
    make_pairs,
    write_dataset,
    write_pairs,
)
from faceforge.errors import UserError

# ----- landmark layout -----------------------------------------------------------------------------


def test_landmark_groups_cover_88_in_order():
    sizes = {name: s.stop - s.start for name, s in LANDMARK_GROUPS.items()}
    assert list(sizes.items()) == [
        ("contour", 21), ("left_eye", 8), ("right_eye", 8), ("left_brow", 8), ("right_brow", 8),
        ("mouth", 22), ("nose", 13),
    ]
    starts = [s.start for s in LANDMARK_GROUPS.values()]
    stops = [s.stop for s in LANDMARK_GROUPS.values()]
    assert starts[0] == 0 and stops[-1] == NUM_LANDMARKS == 88 and starts[1:] == stops[:-1]


def test_flip_permutation_is_an_involution_mapping_groups_to_mirrors():
    perm = FLIP_PERMUTATION_88
    assert sorted(perm.tolist()) == list(range(88))
    np.testing.assert_array_equal(perm[perm], np.arange(88))
    mirror = {"left_eye": "right_eye", "right_eye": "left_eye", "left_brow": "right_brow",
              "right_brow": "left_brow", "contour": "contour", "mouth": "mouth", "nose": "nose"}
    for name, sl in LANDMARK_GROUPS.items():
        target = LANDMARK_GROUPS[mirror[name]]
        assert all(target.start <= p < target.stop for p in perm[sl])


@pytest.mark.parametrize("j", range(5))
def test_flip_permutation_matches_the_mirrored_face(j):
    # a canonical (unposed) identity is left-right symmetric: mirroring x and permuting gives it back
    pts = make_identity(0, j).points[:88, :2]
    flipped = pts * [-1, 1]
    np.testing.assert_allclose(flipped[FLIP_PERMUTATION_88], pts, atol=1e-9)


def test_five_from_88():
    lm = np.random.default_rng(0).uniform(0, 100, (3, 88, 2))
    five = five_from_88(lm)
    assert five.shape == (3, 5, 2)
    np.testing.assert_allclose(five[:, 0], lm[:, 21:29].mean(1))
    np.testing.assert_allclose(five[:, 1], lm[:, 29:37].mean(1))
    np.testing.assert_allclose(five[:, 2], lm[:, 79])
    np.testing.assert_allclose(five[:, 3], lm[:, 53])
    np.testing.assert_allclose(five[:, 4], lm[:, 59])
    with pytest.raises(UserError, match="88"):
        five_from_88(np.zeros((68, 2)))


# ----- determinism -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["aligned", "wild"])
def test_image_depends_only_on_seed_identity_and_index(mode):
    a = SyntheticFaces(seed=3, mode=mode)
    b = SyntheticFaces(seed=3, mode=mode)
    wanted = [(7, 2), (0, 0), (123456, 9), (7, 0)]
    first = {jk: a.render(*jk)[0] for jk in wanted}
    for jk in reversed(wanted):  # another instance, another order, a busy identity cache
        for jj in range(3):
            b.render(jj + 40, 1)
        np.testing.assert_array_equal(b.render(*jk)[0], first[jk])
    assert not np.array_equal(first[(7, 2)], first[(7, 0)])
    other_seed = SyntheticFaces(seed=4, mode=mode).render(7, 2)[0]
    assert not np.array_equal(other_seed, first[(7, 2)])


def test_dataset_images_equal_across_counts_and_offsets():
    small = open_source("synthetic:3x2,offset=4,seed=1")
    big = open_source("synthetic:10x5,seed=1")
    for i in range(len(small)):
        j, k = 4 + i // 2, i % 2
        np.testing.assert_array_equal(small.read(i), big.read(j * 5 + k))
        np.testing.assert_allclose(small.landmarks(i), big.landmarks(j * 5 + k))
    assert small.names == ["id0000004", "id0000005", "id0000006"]
    np.testing.assert_array_equal(small.labels, [0, 0, 1, 1, 2, 2])


def test_geometry_without_pixels_matches_render():
    faces = SyntheticFaces(seed=0, mode="wild")
    img, truth = faces.render(5, 3)
    geo = faces.geometry(5, 3)
    for key in ("landmarks", "five", "box"):
        np.testing.assert_array_equal(geo[key], truth[key])


def test_written_files_equal_across_worker_counts(tmp_path):
    one = write_dataset(tmp_path / "one", 4, 2, offset=10, seed=2, workers=1)
    two = write_dataset(tmp_path / "two", 4, 2, offset=10, seed=2, workers=2)
    for j in range(10, 14):
        for k in range(2):
            assert (one / image_name(j, k)).read_bytes() == (two / image_name(j, k)).read_bytes()
    assert (one / "landmarks.csv").read_text() == (two / "landmarks.csv").read_text()


# ----- ground truth -----------------------------------------------------------------------------------


def test_aligned_images_and_five_points_near_the_template():
    faces = SyntheticFaces(seed=0, mode="aligned")
    tpl = template_points("arcface", 112)
    errors = []
    for j in range(12):
        for k in range(4):
            img, t = faces.render(j, k)
            assert img.shape == (112, 112, 3) and img.dtype == np.uint8
            assert t["landmarks"].shape == (88, 2) and t["five"].shape == (5, 2)
            np.testing.assert_allclose(t["five"], five_from_88(t["landmarks"]), atol=1e-4)
            errors.append(np.linalg.norm(t["five"] - tpl, axis=1))
            x1, y1, x2, y2 = t["box"]
            assert np.all((t["five"] > [x1, y1]) & (t["five"] < [x2, y2]))  # inside the face
    errors = np.array(errors)
    assert errors.max() < 14  # pose, expression and detector jitter move points by a few pixels
    assert np.median(errors) < 5


def test_difficulty_scales_nuisance():
    tpl = template_points("arcface", 112)

    def spread(d):
        faces = SyntheticFaces(seed=0, difficulty=d)
        errs = [np.abs(faces.geometry(j, k)["five"] - tpl).mean() for j in range(6) for k in range(6)]
        return np.mean(errs)

    assert spread(0.0) < spread(1.0) < spread(2.5)
    with pytest.raises(UserError, match="difficulty"):
        SyntheticFaces(difficulty=-1)


def test_landmarks_sit_on_the_drawn_features():
    # without nuisance the pupils are at the eye centres and lips at the mouth landmarks
    faces = SyntheticFaces(seed=0, difficulty=0.0)
    for j in range(8):
        img, t = faces.render(j, 0)
        gray = img.astype(float).mean(2)
        for x, y in t["five"][:2]:
            assert gray[int(round(y)), int(round(x))] < 130
        upper_lip = t["landmarks"][53 + 2]  # the upper outer lip, centre-left
        lip_colour = img[int(round(upper_lip[1] + 1.5)), int(round(upper_lip[0]))].astype(int)
        assert lip_colour[0] > lip_colour[1]  # reddish


def test_wild_mode_box_and_landmarks_inside_the_canvas():
    faces = SyntheticFaces(seed=1, mode="wild")
    for j in range(6):
        img, t = faces.render(j, 1)
        assert img.shape == (256, 256, 3)
        x1, y1, x2, y2 = t["box"]
        assert 0 <= x1 < x2 <= 256 and 0 <= y1 < y2 <= 256
        assert (x2 - x1) > 10
        lm = t["landmarks"]
        assert np.all((lm >= -1) & (lm <= 257))


def test_identities_differ_and_images_vary():
    faces = SyntheticFaces(seed=0)
    imgs = np.stack([faces.render(j, 0)[0] for j in range(6)]).astype(float)
    assert all(np.abs(imgs[i] - imgs[i + 1]).mean() > 5 for i in range(5))
    assert imgs.std() > 20  # not a flat image


# ----- readers, writers, CLI ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec,match",
    [
        ("synthetic:200", "expected"),
        ("synthetic:axb", "expected"),
        ("synthetic:", "expected"),
        ("synthetic:10x2,mode=sideways", "mode"),
        ("synthetic:10x2,difficulty=hard", "difficulty"),
        ("synthetic:10x2,offset=-3", "offset"),
        ("synthetic:10x2,colour=red", "unknown option"),
        ("synthetic:10x2,seed", "unknown option"),
        ("synthetic:10x2,seed=1,seed=2", "twice"),
        ("synthetic:0x2", "at least"),
        ("synthetic:10x2,size=4", "size"),
    ],
)
def test_bad_specs_are_user_errors_naming_the_spec(spec, match):
    with pytest.raises(UserError, match=match) as err:
        open_source(spec)
    assert spec in str(err.value)


def test_spec_options():
    assert parse_spec("200x20,offset=1000,seed=0,mode=wild,difficulty=1.5") == dict(
        n_ids=200, k=20, offset=1000, seed=0, mode="wild", difficulty=1.5
    )
    ds = open_source("synthetic:2x3,mode=wild,size=128")
    assert len(ds) == 6 and ds.num_classes == 2 and ds.read(5).shape == (128, 128, 3)
    assert ds.box(5).shape == (4,) and ds.landmarks(5).shape == (88, 2) and ds.five_points(5).shape == (5, 2)


def test_write_dataset_layout_and_landmarks_csv(tmp_path):
    from faceforge.io.images import read_image

    root = write_dataset(tmp_path / "ds", 3, 2, mode="wild", offset=5, seed=1)
    faces = SyntheticFaces(seed=1, mode="wild")
    with open(root / "landmarks.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == landmarks_header() and len(rows[0]) == 2 + 176 + 10 + 4
    assert len(rows) == 1 + 6
    for row in rows[1:]:
        path, name = row[0], row[1]
        assert (root / path).is_file() and path.startswith(f"{name}/{name}_")
        j, k = int(name[2:]), int(path[-8:-4]) - 1
        truth = faces.geometry(j, k)
        nums = np.array(row[2:], float)
        np.testing.assert_allclose(nums[:176].reshape(88, 2), truth["landmarks"], atol=2e-3)
        np.testing.assert_allclose(nums[176:186].reshape(5, 2), truth["five"], atol=2e-3)
        np.testing.assert_allclose(nums[186:], truth["box"], atol=2e-3)
        img = read_image(root / path)
        assert img.shape == (256, 256, 3)
        assert np.abs(img.astype(int) - faces.render(j, k)[0]).mean() < 4  # JPEG q95 of the same image
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [identity_name(j) for j in (5, 6, 7)]
    assert not list(root.rglob(".*.tmp"))


def parse_pairs(text):
    lines = [ln.split("\t") for ln in text.strip().split("\n")]
    folds, n = map(int, lines[0])
    out = []
    body = lines[1:]
    assert len(body) == folds * 2 * n
    for f in range(folds):
        block = body[f * 2 * n : (f + 1) * 2 * n]
        for ln in block[:n]:
            assert len(ln) == 3
            out.append((f, True, ln[0], int(ln[1]), ln[0], int(ln[2])))
        for ln in block[n:]:
            assert len(ln) == 4
            out.append((f, False, ln[0], int(ln[1]), ln[2], int(ln[3])))
    return folds, n, out


def test_pairs_file_layout_refers_to_existing_files(tmp_path):
    root = write_dataset(tmp_path / "ds", 12, 3, offset=20)
    path = write_pairs(root, 12, 3, folds=3, offset=20)
    folds, n, pairs = parse_pairs(path.read_text())
    assert folds == 3 and n == 12  # 4 identities x 3 same pairs each per fold
    names_per_fold = [set() for _ in range(folds)]
    for f, same, n1, i, n2, j in pairs:
        assert 1 <= i <= 3 and 1 <= j <= 3
        assert (root / n1 / f"{n1}_{i:04d}.jpg").is_file() and (root / n2 / f"{n2}_{j:04d}.jpg").is_file()
        assert (n1 == n2) == same
        if same:
            assert i < j
        names_per_fold[f] |= {n1, n2}
    for a in range(folds):  # folds hold disjoint identities, like LFW's
        for b in range(a + 1, folds):
            assert not names_per_fold[a] & names_per_fold[b]
    assert len({p[1:] for p in pairs}) == len(pairs)  # no pair twice


def test_pairs_file_parses_with_the_lfw_reader(tmp_path):
    pairs_mod = pytest.importorskip("faceforge.eval.pairs")
    root = write_dataset(tmp_path / "ds", 4, 2)
    path = write_pairs(root, 4, 2, folds=2)
    ps = pairs_mod.parse_lfw_pairs(path)
    assert len(ps) == 2 * 2 * 2 and all(p.is_file() for p in ps.images)
    assert ps.issame.sum() == 4


def test_pairs_requests_checked():
    with pytest.raises(UserError, match="2 images"):
        make_pairs(10, 1, folds=2)
    with pytest.raises(UserError, match="identities"):
        make_pairs(3, 4, folds=2)
    with pytest.raises(UserError, match="allow"):
        make_pairs(4, 2, folds=2, per_fold=50)
    assert make_pairs(40, 5, folds=2, seed=3) == make_pairs(40, 5, folds=2, seed=3)


def test_cli_synth(tmp_path, capsys):
    from faceforge.cli.main import main

    out = tmp_path / "cli"
    assert main(["synth", str(out), "--identities", "4", "--images", "2", "--pairs", "2", "--quiet",
                 "--offset", "3", "--difficulty", "0.5"]) == 0
    assert (out / "id0000003" / "id0000003_0002.jpg").is_file() and (out / "pairs.txt").is_file()
    assert (out / "landmarks.csv").is_file()
    assert main(["synth", str(tmp_path / "bad"), "-n", "3", "-k", "2", "--pairs", "2", "--quiet"]) == 2
    assert "identities" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # the bad pairs request failed before rendering
    assert main(["synth", str(tmp_path / "bad2"), "-n", "0", "-k", "2", "--quiet"]) == 2
