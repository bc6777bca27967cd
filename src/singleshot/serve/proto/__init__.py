"""The gRPC protocol the server speaks: inference.proto (the served part of KServe / Triton's
GRPCInferenceService) and its generated, vendored modules (scripts/gen_proto.py)."""
