#!/usr/bin/env bash
# Regenerate fastload/_pb/ from proto/scheduler.proto (needs grpcio-tools: pip install '.[test]').
# tests/test_proto.py fails when the committed stubs no longer match the proto.
set -euo pipefail
cd "$(dirname "$0")"
python -m grpc_tools.protoc -I proto --python_out=fastload/_pb --pyi_out=fastload/_pb \
  --grpc_python_out=fastload/_pb proto/scheduler.proto
# grpc_tools writes an absolute "import scheduler_pb2"; make it package-relative.
sed -i 's/^import scheduler_pb2 as/from . import scheduler_pb2 as/' fastload/_pb/scheduler_pb2_grpc.py
