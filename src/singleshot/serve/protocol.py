"""The Open Inference Protocol v2 over REST, as Triton and KServe speak it: parsing an infer
request (JSON, or JSON followed by binary tensor data) and writing the response.

Binary tensor data extension: the body is a JSON header of ``Inference-Header-Content-Length``
bytes followed by each binary tensor in input order; an input with ``parameters.binary_data_size``
is read from there. A BYTES tensor is serialized element by element as a 4-byte little-endian
length and the bytes (Triton's layout). In plain JSON a BYTES element is base64 text.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass, field

import numpy as np


class ProtocolError(ValueError):
    """A malformed request: answered with 400 and ``{"error": str}``."""


@dataclass
class InferRequest:
    images: list[bytes]
    parameters: dict = field(default_factory=dict)
    binary_outputs: dict[str, bool] = field(default_factory=dict)  # by output name
    binary_default: bool = False
    request_id: str | None = None


class TooMany(ProtocolError):
    """More images in one request than the server can ever queue: 413, not 400."""

    def __init__(self, n: int | str, limit: int) -> None:
        super().__init__(f"{n} images in one request; the server queues at most {limit} "
                         "(send fewer per request)")


# An infer request's JSON holds a few dozen values (its inputs, their shapes and parameters, a
# base64 string per image). json.loads holds the GIL for the whole parse, so a thread does not
# keep it from stalling the server: a body's values are bounded before it is parsed, from its
# separators (bytes.count, ~5 ms for 32 MB) - what 4.6 million tiny strings in 31 MB cannot pass.
MAX_JSON_VALUES = 10_000


def loads(body: bytes, what: str = "the request"):
    """``json.loads(body)`` for a request body, its values bounded first (ProtocolError)."""
    values = body.count(b",") + body.count(b"[") + body.count(b"{") + 1
    if values > MAX_JSON_VALUES:
        raise ProtocolError(f"{what} has too many JSON values (about {values}; at most "
                            f"{MAX_JSON_VALUES})")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(f"{what} is not valid JSON") from None
    except RecursionError:
        raise ProtocolError(f"{what}'s JSON is nested too deeply") from None


def bytes_elements(blob: bytes, limit: int | None = None) -> list[bytes]:
    """Triton's serialized BYTES tensor -> its elements (each a 4-byte little-endian length
    and the bytes); ProtocolError when cut short, or when there are more than ``limit`` (the
    split stops there: 8 million empty elements cost no more than ``limit + 1``)."""
    out, pos = [], 0
    while pos < len(blob):
        if limit is not None and len(out) >= limit:
            raise ProtocolError(f"input 'image' has shape [{limit}] but its BYTES data holds "
                                "more elements")
        if pos + 4 > len(blob):
            raise ProtocolError("BYTES binary data is cut short (a 4-byte length is incomplete)")
        (n,) = struct.unpack_from("<I", blob, pos)
        pos += 4
        if pos + n > len(blob):
            raise ProtocolError("BYTES binary data is cut short (an element is longer than the data)")
        out.append(blob[pos:pos + n])
        pos += n
    return out


def check_shape(shape, max_images: int | None) -> int:
    """The N of input ``image``'s shape [N] (ProtocolError; TooMany past ``max_images``)."""
    if not (isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int)
            and not isinstance(shape[0], bool) and shape[0] >= 1):
        raise ProtocolError(f"input 'image' must have shape [N] with N >= 1, got {shape!r}")
    if max_images is not None and shape[0] > max_images:
        raise TooMany(shape[0], max_images)
    return shape[0]


def parse_infer(body: bytes, header_length: str | None,
                max_images: int | None = None) -> InferRequest:
    """A request body (and its ``Inference-Header-Content-Length``) -> the images and options.
    ProtocolError for anything malformed; TooMany for more than ``max_images`` images. Work
    proportional to the body: run it off the event loop."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise ProtocolError("Inference-Header-Content-Length is not a number") from None
        if not 0 < n <= len(body):
            raise ProtocolError(f"Inference-Header-Content-Length {n} does not fit the body "
                                f"of {len(body)} bytes")
        head, binary = body[:n], body[n:]
    else:
        head, binary = body, b""
    req = loads(head)
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list):
        raise ProtocolError("the request needs an 'inputs' list")
    params = req.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError("'parameters' must be an object")
    inputs = [i for i in req["inputs"] if isinstance(i, dict)]
    offset, images = 0, None
    for inp in inputs:
        size = (inp.get("parameters") or {}).get("binary_data_size")
        data = None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise ProtocolError(f"input {inp.get('name')!r}: binary_data_size {size!r} does "
                                    "not fit the binary data")
            data, offset = binary[offset:offset + size], offset + size
        if inp.get("name") != "image":
            continue
        if inp.get("datatype") != "BYTES":
            raise ProtocolError(f"input 'image' must be BYTES, got {inp.get('datatype')!r}")
        n = check_shape(inp.get("shape"), max_images)
        if data is not None:
            images = bytes_elements(data, n)
        else:
            elements = inp.get("data")
            if not isinstance(elements, list):
                raise ProtocolError("input 'image' has neither binary data nor a 'data' list")
            flat = [e for row in elements for e in (row if isinstance(row, list) else [row])]
            images = []
            for e in flat:
                if not isinstance(e, str):
                    raise ProtocolError("JSON elements of 'image' must be base64 strings")
                try:
                    images.append(base64.b64decode(e, validate=True))
                except (binascii.Error, ValueError):
                    raise ProtocolError("an element of 'image' is not valid base64") from None
        if len(images) != n:
            raise ProtocolError(f"input 'image' has shape [{n}] but {len(images)} elements")
    if images is None:
        raise ProtocolError("the request has no input named 'image'")
    binary_default = bool(params.get("binary_data_output", False))
    outs = {}
    requested = req.get("outputs") or []
    if not isinstance(requested, list):
        raise ProtocolError("'outputs' must be a list")
    for o in requested:
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise ProtocolError("each of 'outputs' must be an object with a 'name'")
        if o["name"] not in OUTPUTS:  # Triton answers 400 here, not an empty list
            raise ProtocolError(f"unknown output {o['name']!r}; the model's outputs are "
                                f"{', '.join(OUTPUTS)}")
        outs[o["name"]] = bool((o.get("parameters") or {}).get("binary_data", binary_default))
    return InferRequest(images, params, outs, binary_default, req.get("id"))


# The outputs of an infer response: name -> (datatype, shape; -1 where it varies).
OUTPUTS = {"boxes": ("FP32", [-1, -1, 4]), "scores": ("FP32", [-1, -1]),
           "category_ids": ("INT64", [-1, -1]), "num_detections": ("INT64", [-1])}


def detections_tensors(dets: list) -> dict[str, np.ndarray]:
    """Detections of N images -> ``boxes`` [N,K,4] (pixels, clipped), ``scores`` [N,K],
    ``category_ids`` [N,K], ``num_detections`` [N]; K = the largest count, rows zero-padded."""
    n, k = len(dets), max((len(d) for d in dets), default=0)
    boxes = np.zeros((n, k, 4), np.float32)
    scores = np.zeros((n, k), np.float32)
    cats = np.zeros((n, k), np.int64)
    for i, d in enumerate(dets):
        m = len(d)
        boxes[i, :m], scores[i, :m], cats[i, :m] = d.xyxy, d.scores, d.category_ids
    return {"boxes": boxes, "scores": scores, "category_ids": cats,
            "num_detections": np.asarray([len(d) for d in dets], np.int64)}


def write_infer(model: str, req: InferRequest, tensors: dict[str, np.ndarray],
                version: str = "1") -> tuple[bytes, dict[str, str]]:
    """The response body and extra headers: JSON, with binary tensors appended where asked."""
    names = [n for n in OUTPUTS if not req.binary_outputs or n in req.binary_outputs]
    outputs, blobs = [], []
    for name, (dtype, _) in OUTPUTS.items():
        if name not in names:
            continue
        arr = tensors[name]
        entry = {"name": name, "datatype": dtype, "shape": list(arr.shape)}
        if req.binary_outputs.get(name, req.binary_default):
            blob = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = arr.reshape(-1).tolist()
        outputs.append(entry)
    doc = {"model_name": model, "model_version": version, "outputs": outputs}
    if req.request_id is not None:
        doc["id"] = req.request_id
    head = json.dumps(doc).encode()
    if not blobs:
        return head, {"Content-Type": "application/json"}
    return head + b"".join(blobs), {"Content-Type": "application/octet-stream",
                                    "Inference-Header-Content-Length": str(len(head))}
