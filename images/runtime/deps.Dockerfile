# <registry>/<image>:<tag>-deps — one step image's third-party dependencies: /opt/venv made from its locked
# wheel set by install-deps.sh, with no network. images/build.sh builds it from that image's own build context
# (requirements.txt, wheels/, install-deps.sh) before the image itself; images/<image>/Dockerfile copies only
# /opt/venv out of it (`ARG DEPS_IMAGE`), so neither the wheels nor pip reach a step image. Docker's cache keeps
# it until the lock or the runtime image changes.
ARG RUNTIME_IMAGE
FROM ${RUNTIME_IMAGE}
# --system-site-packages: the model server's venv also sees its base's torch (TORCH_SOURCE=system).
ARG VENV_OPTIONS=
COPY install-deps.sh prune-botocore.sh requirements.txt /build/
COPY wheels/ /build/wheels/
RUN sh /build/install-deps.sh ${VENV_OPTIONS}
