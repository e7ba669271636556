#!/usr/bin/env bash
# MLServer 1.7 in a venv of its own (.venv-mlserver), for tests/test_mlserver.py: a real
# third-party KServe v2 server, run as a subprocess. Its own venv because mlserver 1.7.1 needs
# protobuf < 7 and fastload's tests run on the newest protobuf.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${FASTLOAD_MLSERVER_VENV:-.venv-mlserver}
if [ ! -x "$venv/bin/mlserver" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'mlserver==1.7.1'
fi
"$venv/bin/mlserver" --version
