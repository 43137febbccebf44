"""Second hardening pass (issue 26): one test (or a few) per class of bad input.

Cards, values parsed from user text, checkpoints without their hash, user text files, numbers read
from files, packed files, resume/init mismatches, outputs. Every CLI case must end with exit status 2
and exactly one stderr line (``assert_one_line_error``); library cases raise one ``UserError``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from conftest import write_identity_crops, write_tiny_checkpoint
from faceforge.embed.card import card_from_dict, load_card
from faceforge.errors import UserError
from test_bad_inputs import assert_one_line_error


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("second")
    ckpt = write_tiny_checkpoint(root / "tiny.ckpt")
    write_identity_crops(root / "crops", seed=1, prefix="p", identities=1, per=2)
    return {"root": root, "ckpt": ckpt, "a": root / "crops/p0/0.png", "b": root / "crops/p0/1.png"}


# -- 1. cards: one schema wherever a card is read -------------------------------------------------

BAD_CARDS = {
    "input_size: [.inf, 112]\n": "input_size: expected an integer, got inf",
    "input_size: [60000, 60000]\n": "input_size: must be in [8, 1024], got 60000",
    "input_size: [112]\n": "input_size: expected [H, W]",
    "notes: 5\n": "notes: expected a list of strings, got int 5",
    "threshold: .nan\n": "threshold: expected a finite number, got nan",
    "threshold: 3.0\n": "threshold: must be in [-1.0, 1.0], got 3.0",
    "far: 0\n": "far: must be in (0.0, 1.0)",
    "embedding_size: true\n": "embedding_size: expected an integer, got True",
    "embedding_size: 1.5\n": "embedding_size: expected an integer, got 1.5",
    "mean: [.nan, 0.5, 0.5]\n": "mean: expected a finite number, got nan",
    "mean_subtract: 1\n": "mean_subtract: expected true or false",
    "name: [a, b]\n": "name: expected a string, got list",
    "layout: 3\n": "layout: expected one of NCHW, NHWC, got 3",
    "template: {points: [[1, 2]], size: [112, 112]}\n": "template.points: expected 5 finite [x, y] points",
    "calibration: {far: .inf}\n": "calibration.far: expected a finite number",
    "licence: {a: 1}\n": "licence: expected a string, got dict",
}


@pytest.mark.parametrize("text", list(BAD_CARDS), ids=range(len(BAD_CARDS)))
def test_card_schema_names_file_and_field(tmp_path, text):
    path = tmp_path / "card.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as e:
        load_card(path)
    assert str(e.value).startswith(f"{path}: ") and BAD_CARDS[text] in str(e.value), str(e.value)


def test_card_schema_accepts_a_full_card():
    card = card_from_dict({"input_size": "112x96", "embedding_size": 512.0, "threshold": 0.3, "far": 1e-3,
                           "notes": "one note", "model_id": 1234, "licence": "MIT",
                           "calibration": {"far": 1e-3, "pairs": 6000, "tar": 0.97, "source": "lfw"}})
    assert card.input_size == (112, 96) and card.embedding_size == 512 and card.model_id == "1234"
    assert card.calibration["pairs"] == 6000 and card.licence == "MIT" and card.notes[0] == "one note"
    assert card_from_dict(card.to_dict()).to_dict() == card.to_dict()  # round trip


def test_card_not_utf8_names_line(tmp_path):
    path = tmp_path / "card.yaml"
    path.write_bytes(b"flip: sum\nname: caf\xe9\n")
    with pytest.raises(UserError, match=r"card.yaml: line 2: not UTF-8"):
        load_card(path)


@pytest.mark.parametrize("where", ["--card", "beside"])
def test_bad_card_on_the_cli_is_one_line(ws, tmp_path, where):
    import shutil

    model = tmp_path / "m.ckpt"
    shutil.copy(ws["ckpt"], model)
    argv = ["verify", str(ws["a"]), str(ws["b"]), "--aligned", "--model", str(model), "--threshold", "0.3"]
    card = tmp_path / ("card.yaml" if where == "--card" else "m.yaml")
    card.write_text("threshold: .nan\n")
    line = assert_one_line_error(argv + (["--card", str(card)] if where == "--card" else []))
    assert f"{card}: threshold: expected a finite number" in line


def test_card_inside_a_checkpoint_is_checked(ws, tmp_path):
    from faceforge.models.checkpoint import read_checkpoint, write_checkpoint

    obj = read_checkpoint(ws["ckpt"])
    obj["backbone"]["meta"]["input_size"] = [60000, 60000]
    write_checkpoint(tmp_path / "big.ckpt", obj)  # re-hashed: a valid file with a bad record
    line = assert_one_line_error(["verify", str(ws["a"]), str(ws["b"]), "--aligned", "--threshold", "0.3",
                                  "--model", str(tmp_path / "big.ckpt")])
    assert "big.ckpt: backbone meta: input_size: must be in [8, 1024]" in line
    obj = read_checkpoint(ws["ckpt"])
    obj["calibration"] = {"threshold": math.nan, "far": 1e-3}
    write_checkpoint(tmp_path / "nan.ckpt", obj)
    line = assert_one_line_error(["verify", str(ws["a"]), str(ws["b"]), "--aligned",
                                  "--model", str(tmp_path / "nan.ckpt")])
    assert "calibration: threshold: expected a finite number" in line


# -- 2. values parsed from user text are checked against the target's declared types -------------


@pytest.fixture(scope="module")
def peer_pth(ws):
    from faceforge.models.convert import export_checkpoint

    path = ws["root"] / "peer.pth"
    export_checkpoint(ws["ckpt"], "arcface_torch", path)
    return path


@pytest.mark.parametrize("value, says", [
    ('!!python/object/apply:os.system ["echo hi"]', "option 'model.width': expected an integer"),
    ("[1, 2]", "option 'model.width': expected an integer, got [1, 2]"),
    ("1.5", "expected an integer, got 1.5"),
    ("0", "cannot be built with width=0: ValueError"),
    ("-3", "cannot be built with width=-3: RuntimeError"),
])
def test_import_option_values_are_checked(ws, peer_pth, tmp_path, value, says):
    line = assert_one_line_error(["import", str(peer_pth), "--from", "arcface_torch", "--backbone",
                                  "mobilefacenet_tiny", "--out", str(tmp_path / "x.ckpt"),
                                  "--option", f"width={value}"])
    assert says in line


def test_set_values_reach_components_checked(tmp_path):
    for item, says in (("model.width=[1, 2]", "expected an integer"),
                       ("model.input_size=abc", "expected a list such as [112, 112]"),
                       ("head.s=.nan", "expected a finite number")):
        line = assert_one_line_error(["train", "--set", "model.backbone=mobilefacenet_tiny", "--set", item,
                                      "--set", f"output={tmp_path}/run", "--set", "data.train=synthetic:4x2"])
        assert says in line, line


def test_third_party_terminal_codes_are_stripped(tmp_path):
    import torch

    from faceforge.errors import clean_message

    assert clean_message("\x1b[1mbold\x1b[0m and \x1b]0;title\x07 \x07bell") == "bold and bell"

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    line = assert_one_line_error(["import", str(tmp_path / "evil.pth"), "--from", "arcface_torch",
                                  "--backbone", "mobilefacenet_tiny", "--out", str(tmp_path / "x.ckpt")])
    assert "\x1b" not in line and "UnpicklingError" in line


# -- 3. the checkpoint hash is required in the current format --------------------------------------


def test_checkpoint_without_its_hash(ws, tmp_path, capsys):
    import torch

    from faceforge.models.checkpoint import VERSION, read_checkpoint

    obj = torch.load(ws["ckpt"], weights_only=True)
    assert obj["version"] == VERSION == 2 and "sha256" in obj
    del obj["sha256"]
    obj["backbone"]["state_dict"] = {k: torch.full_like(v, 1e6) if v.is_floating_point() else v
                                     for k, v in obj["backbone"]["state_dict"].items()}
    torch.save(obj, tmp_path / "nohash.ckpt")
    line = assert_one_line_error(["verify", str(ws["a"]), str(ws["b"]), "--aligned", "--threshold", "0.3",
                                  "--model", str(tmp_path / "nohash.ckpt")])
    assert "sha256 content hash is missing" in line
    obj["version"] = 1  # an older file: loads, with one warning line
    torch.save(obj, tmp_path / "old.ckpt")
    capsys.readouterr()
    assert read_checkpoint(tmp_path / "old.ckpt")["version"] == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("faceforge: warning: ") and "without a content hash" in err[0]
    from test_bad_inputs import run  # the old file's weights (1e6) give NaN scores: an error, not "different"

    code, err = run(["verify", str(ws["a"]), str(ws["b"]), "--aligned", "--threshold", "0.3",
                     "--model", str(tmp_path / "old.ckpt")])
    assert code == 2 and "non-finite embeddings" in err.strip().splitlines()[-1], err
    obj["version"] = 7
    torch.save(obj, tmp_path / "future.ckpt")
    with pytest.raises(UserError, match="format version 7"):
        read_checkpoint(tmp_path / "future.ckpt")


# -- 4. one reader for user text files -------------------------------------------------------------


def test_text_reader_names_file_and_line(tmp_path):
    from faceforge.io.text import read_text

    (tmp_path / "latin1.txt").write_bytes(b"a.jpg\nb.jpg\ncaf\xe9.jpg\n")
    with pytest.raises(UserError, match=r"latin1.txt: line 3: not UTF-8 text \(byte 0xe9"):
        read_text(tmp_path / "latin1.txt")
    (tmp_path / "nul.txt").write_bytes(b"a.jpg\n\0\0")
    with pytest.raises(UserError, match=r"nul.txt: line 2: a NUL byte"):
        read_text(tmp_path / "nul.txt")
    with pytest.raises(UserError, match="file not found"):
        read_text(tmp_path / "absent.txt")
    with pytest.raises(UserError, match="not a file"):
        read_text(tmp_path)
    with pytest.raises(UserError, match="more than the 4"):
        read_text(tmp_path / "latin1.txt", max_bytes=4)


def test_embed_lists_binary_and_missing(ws, tmp_path):
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "missing.txt").write_text(f"{tmp_path}/nope1.jpg\n{tmp_path}/nope2.jpg\n")
    base = ["embed", "--aligned", "--model", str(ws["ckpt"]), "--out", str(tmp_path / "e.npz")]
    line = assert_one_line_error(base + [f"@{tmp_path}/binary.txt"])
    assert "binary.txt: line 1: a NUL byte" in line
    line = assert_one_line_error(base + [f"@{tmp_path}/missing.txt"])
    assert "none of the 2 images exists (missing: " in line and "nope1.jpg" in line


def test_config_not_utf8_is_one_line(tmp_path):
    (tmp_path / "c.yaml").write_bytes(b"seed: 1\noutput: r\xe9sultats\n")
    line = assert_one_line_error(["train", str(tmp_path / "c.yaml")])
    assert "c.yaml: line 2: not UTF-8" in line


# -- 5. numbers read from files: finite and in range ------------------------------------------------


def test_ijb_points_out_of_range(tmp_path):
    from faceforge.eval.ijb_data import open_ijb
    from test_eval_ijb import _write_tree

    root = tmp_path / "IJBC"
    _write_tree(root, subjects=2)
    p = root / "meta/ijbc_name_5pts_score.txt"
    lines = p.read_text().splitlines()
    parts = lines[3].split()
    parts[1] = "1e300"
    lines[3] = " ".join(parts)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"ijbc_name_5pts_score.txt: line 4: x1 1e\+300 is out of range"):
        open_ijb(f"ijbc:{root}")


@pytest.mark.parametrize("value", ["inf", "1e300", "-1e9"])
def test_landmark_label_numbers_out_of_range(tmp_path, value):
    from faceforge.landmarks.label_file import read_labels

    row = ["a.png"] + ["10.5"] * 176
    row[7] = value
    (tmp_path / "l.csv").write_text(",".join(row) + "\n")
    with pytest.raises(UserError, match=rf"l.csv:1: coordinate {value} is not a pixel position"):
        read_labels(tmp_path / "l.csv")
    row[7] = "nan"  # a missing point stays allowed (cleaning drops it with a reason)
    (tmp_path / "l.csv").write_text(",".join(row) + "\n")
    assert np.isnan(read_labels(tmp_path / "l.csv").points).sum() == 1


# -- 6. packed files protect themselves ---------------------------------------------------------------


def _flip(src, dst, offsets):
    data = bytearray(src.read_bytes())
    for off in offsets:
        data[off] ^= 0x10
    dst.write_bytes(bytes(data))
    return dst


def test_packed_header_checksum(tmp_path, capsys):
    from faceforge.data.packed import HEADER, VERSION, PackedDataset
    from tiny_data import write_random_packed

    good = write_random_packed(tmp_path / "six.ffpk", 12, 6)
    assert PackedDataset(good).num_classes == 6 and VERSION == 3
    bad = _flip(good, tmp_path / "flip.ffpk", [33])  # num_classes 6 -> 4102
    line = assert_one_line_error(["data", "stats", str(bad)])
    assert "header checksum mismatch" in line
    # a version-2 file (no header checksum) still opens, with one warning line
    data = bytearray(good.read_bytes())
    data[8:12] = (2).to_bytes(4, "little")
    data[HEADER.size + 28 : HEADER.size + 32] = b"\0\0\0\0"
    (tmp_path / "v2.ffpk").write_bytes(bytes(data))
    capsys.readouterr()
    assert PackedDataset(tmp_path / "v2.ffpk").num_classes == 6
    assert "packed format version 2 has no header checksum" in capsys.readouterr().err


def test_packed_damaged_records_are_skipped_and_counted(tmp_path):
    import torch

    from faceforge.data.loader import build_train_loader
    from faceforge.data.packed import PackedDataset, PackedWriter
    from faceforge.io.images import CorruptImage
    from tiny_data import write_random_packed

    good = write_random_packed(tmp_path / "raw.ffpk", 16, 4)
    size = 112 * 112 * 3
    bad = _flip(good, tmp_path / "bad.ffpk", [4096 + 3 * size + 5, 4096 + 9 * size + 7])
    ds = PackedDataset(bad)
    with pytest.raises(CorruptImage, match="record 3: checksum mismatch"):
        ds.read(3)
    loader = build_train_loader(ds, 8, seed=0, flip=False)
    seen = sum(len(labels) for _, labels in loader.iter_from(0))
    assert seen == 14 and loader.skipped == 2
    ds.check_records = False  # data.record_crc: false
    loader = build_train_loader(ds, 8, seed=0, flip=False)
    assert sum(len(labels) for _, labels in loader.iter_from(0)) == 16 and loader.skipped == 0
    # JPEG records: checked before decoding
    w = PackedWriter(tmp_path / "jpeg.ffpk", encoding="jpeg")
    for i in range(4):
        w.add(np.full((112, 112, 3), 40 * i, np.uint8), i)
    w.close()
    jp = PackedDataset(tmp_path / "jpeg.ffpk")
    off = int(jp.index["offset"][2]) + int(jp.index["length"][2]) // 2
    jp = PackedDataset(_flip(tmp_path / "jpeg.ffpk", tmp_path / "jpeg_bad.ffpk", [off]))
    with pytest.raises(CorruptImage, match="record 2: checksum mismatch"):
        jp.read(2)
    assert torch.is_tensor(torch.from_numpy(jp.read(1)))


# -- 7. resume and init mismatches are one line naming both values ----------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from faceforge.cli.main import main
    from tiny_data import write_random_packed

    root = tmp_path_factory.mktemp("resume")
    write_random_packed(root / "four.ffpk", 16, 4)
    write_random_packed(root / "five.ffpk", 15, 5)
    assert main(_train_argv(root, []) + ["--quiet"]) == 0
    return root


def _train_argv(root, extra):
    base = {"data.train": f"packed:{root}/four.ffpk", "model.backbone": "mobilefacenet_tiny",
            "model.embedding_size": "32", "data.batch_size": "8", "train.max_steps": "1", "train.epochs": "1",
            "output": f"{root}/run"}
    base.update(dict(e.split("=", 1) for e in extra))
    return ["train"] + [a for k, v in base.items() for a in ("--set", f"{k}={v}")]


@pytest.mark.parametrize("extra, says", [
    (["model.embedding_size=16"], "resume: the checkpoint's embedding size is 32, the config's "
                                  "(model.embedding_size) is 16"),
    (["model.backbone=mobilefacenet"], "the checkpoint's backbone is 'mobilefacenet_tiny', the config's "
                                       "(model.backbone) is 'mobilefacenet'"),
    (["head.name=cosface"], "the checkpoint's head is 'arcface', the config's (head.name) is 'cosface'"),
    (["data.train=packed:{root}/five.ffpk"], "classifier has 4 classes, the training data"),
    (["model.width=8"], "the checkpoint's backbone options are {}, the config's (model.*) are {'width': 8}"),
])
def test_resume_mismatch_is_one_line(run_dir, extra, says):
    extra = [e.format(root=run_dir) for e in extra]
    line = assert_one_line_error(_train_argv(run_dir, extra) + ["--resume", "auto"])
    assert says in line, line


def test_init_mismatch_is_one_line(run_dir):
    extra = ["model.embedding_size=16", f"model.init={run_dir}/run/last.ckpt", f"output={run_dir}/init"]
    line = assert_one_line_error(_train_argv(run_dir, extra))
    assert ("model.init: the checkpoint's embedding size is 32, the config's (model.embedding_size) is 16"
            in line)


# -- 8. outputs: format checked first; nothing usable is an error saying why --------------------------


def test_draw_output_format_checked_before_work(tmp_path):
    missing_model = tmp_path / "no_model.ckpt"  # never loaded: the --out check comes first
    photo = tmp_path / "a.jpg"
    cv2.imwrite(str(photo), np.zeros((64, 64, 3), np.uint8))
    line = assert_one_line_error(["landmarks", "draw", str(photo), "--model", str(missing_model),
                                  "--out", str(tmp_path / "out.xyz")])
    assert "cannot write images of type '.xyz'" in line
    line = assert_one_line_error(["landmarks", "draw", str(photo), "--model", str(missing_model),
                                  "--out", str(tmp_path / "out.png")])
    assert "no_model.ckpt" in line  # a good suffix gets as far as loading the model


def test_landmarks_label_with_nothing_labelled_fails(tmp_path):
    pytest.importorskip("dlib", reason="the default teacher needs dlib")
    from conftest import need_retinaface

    need_retinaface()
    (tmp_path / "src/p").mkdir(parents=True)
    (tmp_path / "src/p/x.jpg").write_bytes(b"not an image")
    line = assert_one_line_error(["landmarks", "label", str(tmp_path / "src"), str(tmp_path / "l.csv"),
                                  "--quiet"])
    assert "no face labelled in the 1 images" in line and "1 unreadable" in line
    assert not (tmp_path / "l.csv").exists()


def test_align_with_no_face_fails(tmp_path):
    from conftest import need_retinaface

    need_retinaface()
    (tmp_path / "src/p").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"src/p/{i}.jpg"), np.full((96, 96, 3), 128, np.uint8))
    line = assert_one_line_error(["align", str(tmp_path / "src"), str(tmp_path / "dst"), "--quiet"])
    assert "align: no face aligned in the 2 images (2 without a face" in line


def test_mask_error_names_the_file(tmp_path):
    from test_bad_inputs import header_bomb_png

    (tmp_path / "src/p").mkdir(parents=True)
    (tmp_path / "src/p/big.png").write_bytes(header_bomb_png(16000, 16000))
    line = assert_one_line_error(["data", "mask", str(tmp_path / "src"), str(tmp_path / "dst"), "--quiet"])
    assert "first: " in line and "big.png" in line


def test_landmarks_clean_dropping_everything_fails(tmp_path):
    row = ["a.png"] + ["nan"] * 176
    (tmp_path / "l.csv").write_text(",".join(row) + "\n")
    line = assert_one_line_error(["landmarks", "clean", str(tmp_path / "l.csv"),
                                  "--out", str(tmp_path / "c.csv")])
    assert "all 1 rows were dropped (1 not_finite)" in line and not (tmp_path / "c.csv").exists()


def test_training_on_damaged_records(tmp_path):
    """Some damaged records: trained around and counted; every record damaged: an error, not 0 steps."""
    import json

    from faceforge.cli.main import main
    from tiny_data import write_random_packed

    good = write_random_packed(tmp_path / "p.ffpk", 16, 4)
    size = 112 * 112 * 3
    some = _flip(good, tmp_path / "some.ffpk", [4096 + k * size + 11 for k in (1, 6, 12)])
    every = _flip(good, tmp_path / "every.ffpk", [4096 + k * size + 11 for k in range(16)])
    argv = ["train", "--set", "model.backbone=mobilefacenet_tiny", "--set", "model.embedding_size=16",
            "--set", "data.batch_size=8", "--set", "train.epochs=1", "--set", "train.log_every=1", "--quiet"]
    assert main(argv + ["--set", f"data.train=packed:{some}", "--set", f"output={tmp_path}/a"]) == 0
    logged = [json.loads(line) for line in (tmp_path / "a/metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["skipped_images"] == 3
    line = assert_one_line_error(argv + ["--set", f"data.train=packed:{every}",
                                         "--set", f"output={tmp_path}/b"])
    assert "no step ran: all 16 images read" in line


def test_balance_keeping_nothing_fails(tmp_path):
    write_identity_crops(tmp_path / "src", seed=3, prefix="p", identities=2, per=3)
    line = assert_one_line_error(["data", "balance", str(tmp_path / "src"), str(tmp_path / "dst"),
                                  "--drop-at-most", "5"])
    # the rule that emptied it is named, with the cut-off to change (data balance, issue 24.5)
    assert "balance: every identity of" in line and "--drop-at-most" in line
