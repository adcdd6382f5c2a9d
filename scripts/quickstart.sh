#!/usr/bin/env bash
# Install pixseek, index a folder of images and search it:
#   bash scripts/quickstart.sh [FOLDER] [QUERY]
# FOLDER defaults to scikit-image's sample photos (installed with the test tools), QUERY to "a cat".
# The collection lives in .data/ of this checkout. The model is $PIXSEEK_MODEL (a preset such as
# clip or altclip-m9, a hub id, or a local checkpoint directory), default clip. Without a reachable
# model hub and without PIXSEEK_MODEL, a RANDOM-WEIGHT demo checkpoint is built so the pipeline
# still runs end to end; its rankings are meaningless.
set -euo pipefail
cd "$(dirname "$0")/.."
folder=${1:-}
query=${2:-a cat}
# Check the arguments before minutes of installing: a typo fails now, in one line.
if [ -n "$folder" ] && [ ! -d "$folder" ]; then
    echo "quickstart: no such folder: $folder (run without arguments to index the sample photos)" >&2
    exit 2
fi
if [ -n "$folder" ]; then folder=$(cd "$folder" && pwd); fi

EXTRAS=dev bash scripts/install.sh
export PATH="$(pwd)/.venv/bin:$PATH"
export PIXSEEK_DATA_DIR=${PIXSEEK_DATA_DIR:-$(pwd)/.data}
export HF_HUB_DISABLE_PROGRESS_BARS=1  # transformers' own bars (saving the demo checkpoint)
folder=${folder:-$(python -c "import os, skimage; print(os.path.join(os.path.dirname(skimage.__file__), 'data'))")}

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
cat >&2 <<TEXT

Done: the collection 'default' in $PIXSEEK_DATA_DIR holds $folder, embedded with $PIXSEEK_MODEL.
Every later command uses that model by itself. To go on in this shell:

  source .venv/bin/activate
  export PIXSEEK_DATA_DIR=$PIXSEEK_DATA_DIR
  pixseek search "a red car"
  pixseek serve --watch        # the search page at http://127.0.0.1:8000 over the same folder
TEXT
