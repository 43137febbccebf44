"""``faceforge info``: the CPU's features and the engine and precision each network runs on."""

from __future__ import annotations

import json


def add_commands(sub) -> None:
    p = sub.add_parser("info", help="CPU features and the engine/precision each network will use",
                       description="Print this CPU's model and features (AVX-512, VNNI, BF16, AMX ...) "
                                   "and, "
                                   "for the detectors, the landmark model and any --model, the engine and "
                                   "precision 'engine: auto' picks here (measured once per model and "
                                   "machine, then cached). 'faceforge --engine X info' shows a forced "
                                   "choice.")
    p.add_argument("--model", action="append", default=[], metavar="MODEL",
                   help="also an embedding model (.onnx, checkpoint ...); repeatable")
    p.add_argument("--detector", action="append", default=None, choices=["retinaface", "mtcnn"],
                   help="only these detectors (default: both)")
    p.add_argument("--no-landmarks", action="store_true", help="leave out the landmark model")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_info)


def _info(args) -> int:
    from faceforge.deploy.engines import format_report, report

    rep = report(args.model, tuple(args.detector or ("retinaface", "mtcnn")), not args.no_landmarks)
    print(json.dumps(rep, indent=1) if args.json else format_report(rep))
    return 0
