"""Real video files for the video tests: synthetic scenes (the demo model's domain) encoded
with H.264 by PyAV, small and short."""

import pytest

from helpers import write_video

pytest.importorskip("av")  # an extra of `all`: CI installs it, so this never skips there


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """3 s at 10 fps, 160x128: 30 frames."""
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4")
