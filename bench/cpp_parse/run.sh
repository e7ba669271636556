#!/usr/bin/env bash
# Builds the C++ ModelInferRequest parser and checks it against Python on fastload's
# hand-encoded KServe requests (see README.md).
#
# Needs Debian's C++ protobuf (not installed by this script):
#   apt-get update && apt-get install -y libprotobuf-dev protobuf-compiler g++
# and the project venv (.venv, fastload installed with its compiled extensions).
#
# Usage: bench/cpp_parse/run.sh [check.py options]   BUILD_DIR overrides the build folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${BUILD_DIR:-$here/build}"  # ignored by git (.gitignore: build/)
rm -rf "$build" && mkdir -p "$build"

protoc --proto_path="$root/proto" --cpp_out="$build" "$root/proto/kserve.proto"
g++ -std=c++17 -O2 -Wall -I"$build" -o "$build/parse_infer" \
  "$here/parse_infer.cc" "$build/kserve.pb.cc" $(pkg-config --cflags --libs protobuf) -pthread

. "$root/.venv/bin/activate"
python "$here/check.py" --parser "$build/parse_infer" "$@"
