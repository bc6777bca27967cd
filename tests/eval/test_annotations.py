"""COCO annotation files: malformed input gets clear errors."""

import pytest
from typer.testing import CliRunner

from singleshot.app.cli import app
from singleshot.eval.annotations import AnnotationError, load_annotations


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[]", "expected a JSON object"),
    ('{"images": [], "annotations": []}', "'categories'"),
    ('{"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 2, "category_id": 1,'
     ' "bbox": [0,0,1,1]}], "categories": [{"id": 1, "name": "a"}]}', "image id 2"),
    ('{"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 1, "category_id": 1,'
     ' "bbox": [0,0,1]}], "categories": [{"id": 1, "name": "a"}]}', "bbox"),
])
def test_malformed_annotations(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(AnnotationError, match=message):
        load_annotations(path)
    res = CliRunner().invoke(app, ["eval", "--results", str(path), "--annotations", str(path),
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1
