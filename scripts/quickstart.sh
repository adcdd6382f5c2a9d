#!/usr/bin/env bash
# Install pixseek, index a folder of images and search it:
#   bash scripts/quickstart.sh [FOLDER] [QUERY]
# FOLDER defaults to scikit-image's sample photos, QUERY to "a cat". The model is $PIXSEEK_MODEL
# (a preset such as clip or altclip-m9, a hub id, or a local checkpoint directory), default clip.
# Without a reachable model hub and without PIXSEEK_MODEL, a RANDOM-WEIGHT demo checkpoint is built
# so the pipeline still runs end to end; its rankings are meaningless.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=dev bash scripts/install.sh
export PATH="$(pwd)/.venv/bin:$PATH"
export PIXSEEK_DATA_DIR=${PIXSEEK_DATA_DIR:-$(pwd)/.data}

folder=${1:-$(python -c "import os, skimage; print(os.path.join(os.path.dirname(skimage.__file__), 'data'))")}
query=${2:-a cat}

if [ -z "${PIXSEEK_MODEL:-}" ]; then
    if python - <<'PY'
import socket, sys
from urllib.parse import urlparse
from huggingface_hub import constants
host = urlparse(constants.ENDPOINT).hostname
try:
    socket.create_connection((host, 443), timeout=3).close()
except OSError:
    sys.exit(1)
PY
    then
        export PIXSEEK_MODEL=clip
    else
        echo "quickstart: no model hub reachable and PIXSEEK_MODEL unset: building a RANDOM-WEIGHT demo" \
             "checkpoint in .cache/demo-clip (results are meaningless; set PIXSEEK_MODEL=<checkpoint dir>)" >&2
        [ -f .cache/demo-clip/config.json ] || python -m pixseek.testing.tiny_models clip .cache/demo-clip >/dev/null
        export PIXSEEK_MODEL=$(pwd)/.cache/demo-clip
    fi
fi

pixseek index "$folder"
pixseek search "$query" -k 5
