"""The serving front ends over the same Detector: the Open Inference Protocol v2 over REST
(KServe/Triton, with Triton's extensions) and over gRPC, a plain /detect, a page at /, a model
repository folder, and the connection limits uvicorn lacks.

Modules: ``service`` (what every protocol does with a request), ``models`` / ``folder`` (model
versions, the repository), ``batcher``, ``stats`` / ``metrics``, ``settings``, ``protocol`` /
``coding`` (REST tensors and content codings), ``server`` (the FastAPI app), ``grpc_service`` and
``proto`` (gRPC), ``connections``, ``static`` (the page).
"""
