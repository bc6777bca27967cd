"""What bench says about the CPU, for every CPU kind (injected flags)."""



def test_cpu_classes_and_int8_notes_for_every_cpu_kind():
    """What bench says depends on the CPU; each kind is checked with injected flags."""
    from singleshot.perf.bench import int8_notes
    from singleshot.runtime.cpu import has_bf16, int8_class, why_int8_is_slow

    avx2 = {"sse4_2", "avx", "avx2", "fma"}
    epyc = avx2 | {"avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni"}
    xeon = epyc | {"amx_bf16", "amx_int8", "amx_tile"}
    assert [int8_class(f) for f in (set(), avx2, avx2 | {"avx_vnni"}, epyc, xeon)] == [
        "none", "avx2", "avx-vnni", "avx512-vnni", "amx"]
    assert [has_bf16(f) for f in (avx2, epyc, xeon)] == [False, True, True]
    row = lambda m, p, ms: {"model": m, "backend": "onnxruntime", "precision": p,  # noqa: E731
                            "stages_ms": {"inference": ms}}
    slow = [row("a.onnx", "fp32", 10.0), row("a-int8.onnx", "int8", 12.0)]
    fast = [row("a.onnx", "fp32", 10.0), row("a-int8.onnx", "int8", 4.0)]
    for flags in (avx2, epyc, xeon):
        cpu = {"int8": int8_class(flags)}
        assert int8_notes(fast, cpu) == []
        (note,) = int8_notes(slow, cpu)
        assert "a-int8.onnx" in note and why_int8_is_slow(cpu) in note
    assert "no VNNI or AMX" in why_int8_is_slow({"int8": "avx2"})
    assert "amx" in why_int8_is_slow({"int8": "amx"}) and "narrow" in why_int8_is_slow({"int8": "amx"})
