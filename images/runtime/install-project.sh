#!/bin/sh
# The project layer of every step image (images/<step>/Dockerfile, after `COPY --from=deps /opt/venv`):
# installs the project wheel /build/project/*.whl into /opt/venv with a pip that ensurepip brings and this
# script removes again, then checks the image's contract, then leaves only the project behind
# (/build, with this script, and whatever the checks wrote under /tmp are removed). images/build.sh
# puts this file beside the wheel in each build context's project/.
#
# Usage: sh /build/project/install-project.sh [--with MODULE...] [--without MODULE...]
#   always      `import genai_pipeline.runner` must work
#   --with      each MODULE must import                  (e.g. model-server: torch transformers ...)
#   --without   no MODULE may be installed (find_spec)   (e.g. torch onnxruntime in the light images)
set -eu
had_setuptools=$(python -c 'import setuptools' 2>/dev/null && echo 1 || echo 0)
python -m ensurepip >/dev/null
python -m pip install --no-cache-dir --disable-pip-version-check --no-index --no-deps /build/project/*.whl
[ "$had_setuptools" = 1 ] || python -m pip uninstall --yes --disable-pip-version-check setuptools
python -m pip uninstall --yes --disable-pip-version-check pip
python - "$@" <<'PY'
import importlib
import importlib.util
import sys

import genai_pipeline.runner  # noqa: F401

wanted, unwanted, into = [], [], None
for arg in sys.argv[1:]:
    if arg in ("--with", "--without"):
        into = wanted if arg == "--with" else unwanted
    elif into is None:
        sys.exit(f"install-project.sh: {arg!r}: expected --with or --without first")
    else:
        into.append(arg)
for module in wanted:
    importlib.import_module(module)
bad = [module for module in unwanted if importlib.util.find_spec(module)]
assert not bad, f"must not contain {bad}"
PY
# Imports may leave files under /tmp (onnxruntime writes .cache/Microsoft/... there): none stays in the image.
rm -rf /build
find /tmp -mindepth 1 -maxdepth 1 -exec rm -rf {} +
