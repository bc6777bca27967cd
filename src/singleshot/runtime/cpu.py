"""What this CPU offers the detector: its model name, the int8 dot-product class that decides
whether int8 beats fp32 (avx2 < avx512-vnni / avx-vnni < amx) and bf16 support. Read from
/proc/cpuinfo flags (Linux), with OpenVINO's OPTIMIZATION_CAPABILITIES where installed."""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

# int8 classes, best first: (class, the /proc/cpuinfo flag that gives it)
INT8_CLASSES = (("amx", "amx_int8"), ("avx512-vnni", "avx512_vnni"), ("avx-vnni", "avx_vnni"),
                ("avx2", "avx2"))

WHY_INT8_SLOW = {
    "avx2": "this CPU has no VNNI or AMX: an int8 dot product on AVX2 takes vpmaddubsw + "
            "vpmaddwd + add, no more multiply-accumulates per cycle than fp32 FMA, so int8 "
            "saves memory traffic only",
    "none": "this CPU has no SIMD int8 dot product that onnxruntime or OpenVINO use",
}
WHY_INT8_SLOW_VNNI = ("this CPU has {cls} int8 dot products, which pay on wide convolutions; this "
                      "model spends too little of its time in them (narrow layers or a small "
                      "input) for int8 to offset its quantize/dequantize steps")


def int8_class(flags: set[str]) -> str:
    return next((cls for cls, flag in INT8_CLASSES if flag in flags), "none")


def has_bf16(flags: set[str]) -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def _proc_cpuinfo() -> tuple[str, set[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model or platform.processor() or platform.machine(), flags


def cpu_fingerprint() -> str:
    """A short hash of the CPU model and its flags: what a measured choice depends on."""
    import hashlib

    model, flags = _proc_cpuinfo()
    return hashlib.sha256((model + " ".join(sorted(flags))).encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def cpu_info() -> dict:
    """``{"model", "int8": avx2|avx-vnni|avx512-vnni|amx|none, "bf16": bool, "cores",
    "openvino_capabilities": [...] or None}``."""
    import os

    model, flags = _proc_cpuinfo()
    caps = None
    try:
        import openvino as ov

        caps = sorted(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # not installed, or no CPU plugin: /proc/cpuinfo alone says
        pass
    bf16 = has_bf16(flags) or (caps is not None and "BF16" in caps)
    return {"model": model, "int8": int8_class(flags), "bf16": bf16, "cores": os.cpu_count(),
            "openvino_capabilities": caps}


def describe(info: dict | None = None) -> str:
    info = info or cpu_info()
    return (f"CPU: {info['model']} ({info['cores']} cores); int8 dot product: {info['int8']}; "
            f"bf16: {'yes' if info['bf16'] else 'no'}")


def why_int8_is_slow(info: dict | None = None) -> str:
    info = info or cpu_info()
    cls = info["int8"]
    return WHY_INT8_SLOW.get(cls) or WHY_INT8_SLOW_VNNI.format(cls=cls)
