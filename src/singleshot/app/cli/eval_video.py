"""``singleshot eval-video``: tracking metrics (HOTA, MOTA, IDF1...) of tracks against
MOTChallenge ground truth."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ...errors import UsageError
from .common import JsonOpt, _alias, _err, app, user_errors


@app.command("eval-video")
@user_errors
def eval_video(
    tracks: Annotated[Path, typer.Option("--tracks", help="Folder of tracks: <seq>/tracks.txt (singleshot video's output) or <seq>.txt (MOTChallenge results).")],
    gt: Annotated[Path, typer.Option("--gt", help="Folder of sequences with <seq>/gt/gt.txt (singleshot data synth-video, MOTChallenge).")],
    as_json: JsonOpt = False,
    class_names: Annotated[Optional[str], typer.Option("--class-names", help="Names for the class ids, a file (one per line) or comma-separated, in id order: one per class id found (default: the synthetic shapes when the ids are 1..6).")] = None,
    classes: Annotated[Optional[str], typer.Option("--classes", hidden=True)] = None,
) -> None:
    """Class-aware HOTA, MOTA, IDF1, id switches, per class and overall. Exit 1 when a
    sequence has no tracks (it is scored as all missed)."""
    from ...eval.mot import evaluate, find_sequences, read_mot
    from ...io.tables import markdown_table

    seqs = find_sequences(gt, tracks)
    gts, trs, missing = {}, {}, []
    for name, gt_file, tr_file in seqs:
        gts[name] = read_mot(gt_file, gt=True)
        trs[name] = read_mot(tr_file) if tr_file is not None else {}
        if tr_file is None:
            missing.append(name)
    classes = _alias(class_names, "--class-names", classes, "--classes")
    ids = sorted({c for g in gts.values() for c in g} | {c for t in trs.values() for c in t})
    if classes:
        listed = Path(classes)  # a file of names (one per line) or the names themselves
        given = [n.strip() for n in (listed.read_text().splitlines() if listed.is_file()
                                     else classes.split(",")) if n.strip() or not listed.is_file()]
        if any(not n for n in given) or len(given) != len(set(given)):
            raise UsageError(f"--class-names must be distinct, non-empty names, got {classes!r}")
        if len(given) < max(ids, default=0):
            raise UsageError(f"--class-names gives {len(given)} name(s) but the files hold class "
                             f"ids up to {max(ids)} ({', '.join(map(str, ids))}): one name per "
                             "id, in id order")
        names = {k + 1: n for k, n in enumerate(given)}
    else:
        from ...data.synth import CLASSES

        names = {k + 1: n for k, n in enumerate(CLASSES)} if set(ids) <= set(range(1, 7)) else {}
    res = evaluate(gts, trs, names)
    for name in missing:
        _err(f"{name}: no tracks in {tracks} (looked for {name}/tracks.txt and {name}.txt)")
    if as_json:
        print(json.dumps(res))
    keys = ("HOTA", "DetA", "AssA", "MOTA", "MOTP", "IDF1", "IDSW", "FP", "FN", "GT_IDs", "IDs")
    def cells(m):
        return [f"{m[k]:.3f}" if isinstance(m[k], float) else str(m[k]) for k in keys]

    rows = [["overall", *cells(res["overall"])]] + \
        [[f"class {c}", *cells(m)] for c, m in res["per_class"].items()] + \
        [[s, *cells(m)] for s, m in res["per_sequence"].items()]
    print(markdown_table(["", *keys], rows), file=sys.stderr if as_json else sys.stdout, end="")
    if missing:
        raise typer.Exit(1)
