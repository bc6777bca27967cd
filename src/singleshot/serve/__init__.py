"""The serving front ends over the same Detector: the Open Inference Protocol v2 over REST
(KServe/Triton, with Triton's extensions) and over gRPC, a plain /detect, a page at /, a model
repository folder, the connection limits uvicorn lacks, and the same server as a Ray Serve
application.

Modules: ``service`` (what every protocol does with a request), ``models`` / ``folder`` (model
versions, the repository), ``batcher``, ``stats`` / ``metrics``, ``settings``, ``protocol`` /
``coding`` (REST tensors and content codings), ``server`` (the FastAPI app), ``build`` (what
is served, as one config, and the app built from it), ``grpc_service`` and ``proto`` (gRPC),
``connections``, ``static`` (the page), ``ray_serve`` (``serve --engine ray``).
"""
