"""Regenerate singleshot/serve/proto/inference_pb2.py and inference_pb2_grpc.py from
inference.proto with the pinned code generator:

    pip install grpcio-tools==1.74.0   # protobuf gencode 6.31.1: runtime protobuf >=6.31.1,<7
    python scripts/gen_proto.py

The generated modules are vendored (not built at install time: the install then needs no
compiler, and the code that runs is the code that was tested). Three edits after protoc: the
messages go into a descriptor pool of their own (Triton's proto defines the same `inference.*`
names in the default pool, and a pool refuses a name twice: needed beside tritonclient.grpc in
one process), their classes name their real module (pickle finds them: Ray Serve's gRPC proxy),
and the grpc module imports the messages relative to the package.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src" / "singleshot" / "serve" / "proto"


def main() -> None:
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.",
                    "--grpc_python_out=.", "inference.proto"], cwd=HERE, check=True)
    pb2 = HERE / "inference_pb2.py"
    text = pb2.read_text()
    old = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
    assert old in text, "protoc's output changed: check the pool edit"
    text = text.replace(old, "POOL = _descriptor_pool.DescriptorPool()  # singleshot: a pool of "
                             "its own (see scripts/gen_proto.py)\nDESCRIPTOR = POOL.AddSerializedFile(")
    # the messages' __module__ is where they really live, so that pickle finds them (Ray
    # Serve's gRPC proxy pickles each request on its way to a replica)
    old = "_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, 'inference_pb2', _globals)"
    assert old in text, "protoc's output changed: check the module name edit"
    text = text.replace(old, old.replace("'inference_pb2'", "__name__"))
    pb2.write_text(text)
    grpc_mod = HERE / "inference_pb2_grpc.py"
    text = grpc_mod.read_text()
    old = "import inference_pb2 as inference__pb2"
    assert old in text, "protoc's output changed: check the import edit"
    grpc_mod.write_text(text.replace(old, "from . import inference_pb2 as inference__pb2"))


if __name__ == "__main__":
    main()
