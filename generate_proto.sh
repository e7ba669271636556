#!/usr/bin/env bash
# Regenerate fastload/_pb/ from proto/scheduler.proto and proto/kserve.proto.
# tests/test_proto.py fails when the committed stubs no longer match the proto, or when they were
# made by a protoc newer than protobuf 6.30: generated code refuses to run on a protobuf runtime
# older than the protoc that made it, and tritonclient 2.73 needs protobuf < 7, so the stubs come
# from grpcio-tools 1.72.1 (protoc for protobuf 6.30), kept in a venv of its own ($PROTO_TOOLS).
set -euo pipefail
cd "$(dirname "$0")"
tools=${PROTO_TOOLS:-.proto-tools}
if [ ! -x "$tools/bin/python" ]; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet 'grpcio-tools==1.72.1'
fi
"$tools/bin/python" -m grpc_tools.protoc -I proto --python_out=fastload/_pb \
  --pyi_out=fastload/_pb --grpc_python_out=fastload/_pb proto/scheduler.proto
# kserve.proto declares no service (see its header): messages only.
"$tools/bin/python" -m grpc_tools.protoc -I proto --python_out=fastload/_pb \
  --pyi_out=fastload/_pb proto/kserve.proto
# grpc_tools writes an absolute "import scheduler_pb2"; make it package-relative.
sed -i 's/^import scheduler_pb2 as/from . import scheduler_pb2 as/' fastload/_pb/scheduler_pb2_grpc.py
