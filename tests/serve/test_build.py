"""What a server serves as one config: the instance plan by model size and CPUs, the input side
read from the file, and the config's round trip as the dict a Ray replica receives."""

import os

import pytest

from singleshot.errors import ModelError, UsageError
from singleshot.serve.build import ServerConfig, input_side


def test_the_instance_plan_follows_the_model_and_the_cores():
    cores = os.cpu_count() or 1
    small, large = ServerConfig().plan(None, 300), ServerConfig().plan(None, 1200)
    assert small == ((2, cores // 2) if cores >= 2 else (1, 1))
    assert large == (1, cores)  # one instance with every core for the 1200 model
    assert ServerConfig(instances=3, threads=1).plan(None, 1200) == (3, 1)  # as asked
    assert ServerConfig().plan(0.5) == (1, 1) and ServerConfig().plan(4) == (1, 4)  # a replica


def test_input_side_and_one_line_errors(tmp_path):
    assert input_side("demo") == 300
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelError):
        input_side(broken)


def test_the_config_round_trips_and_refuses_what_cannot_be_served():
    config = ServerConfig(model="demo", max_batch=4, cors=["http://a"])
    assert ServerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(UsageError, match="unknown server settings: nope"):
        ServerConfig.from_dict({"nope": 1})
    with pytest.raises(UsageError, match="--poll-s"):
        ServerConfig(poll_s=1.0).check()
    with pytest.raises(UsageError, match="--name"):
        ServerConfig(model_repository="x", name="y").check()
