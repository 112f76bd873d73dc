#!/usr/bin/env bash
# Print the tag of the project's images: the first 12 hex digits of a SHA-256 over every file that goes into
# any of them (images/, src/, dags/, uv.lock, pyproject.toml; paths and contents). A changed input gives a new
# tag, so a node never keeps running an old image under a reused name, and the tag the chart hands to the
# step pods (PIPELINE_RUNTIME__IMAGE_TAG) is the one images/build.sh built. Same tree, same tag, on any machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
find images src dags uv.lock pyproject.toml -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12
