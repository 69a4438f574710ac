# The imgcls image: every component of the pipeline on Kubeflow Pipelines, and
# the retrain CronJob (kubernetes/retrain). Build from the repository root:
#   make image                                   (docker, else buildah; CPU-only)
#   docker build -t imgcls:latest .              (the GPU variant, the default)
#   docker build --build-arg TENSORFLOW_EXTRA= -t imgcls:cpu .   (CPU-only)
# docs/kubeflow.md says how to push it, and what takes its space.
#
# Debian 13 (trixie): TFX 1.21's ml-metadata and TFDV wheels need glibc >= 2.39
# (trixie has 2.41). Python 3.13, as in the local environment (scripts/in-env).
# The base is a build argument, for mirrors and local stand-ins
# (scripts/base-image); any Debian 13 image with python3 and pip will do.
ARG BASE_IMAGE=python:3.13.13-slim-trixie

FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PATH=/opt/imgcls/bin:$PATH \
    VIRTUAL_ENV=/opt/imgcls \
    # The project's Keras mode (tf-keras, Keras 2), as scripts/in-env sets it.
    TF_USE_LEGACY_KERAS=1 \
    # Any uid finds a writable home, also one that /etc/passwd does not know
    # (OpenShift's restricted policy, a KFP admin's default runAsUser).
    HOME=/home/imgcls

# The pinned dependencies first, in their own layers: editing the code does
# not reinstall TensorFlow.
COPY scripts/lock-section /usr/local/bin/lock-section
COPY requirements.lock /etc/imgcls/requirements.lock
# requirements.lock's runtime section into a venv, every package pinned and
# hash-checked. g++ is here for one step only, and purged in it: TFDV 1.21
# pins pyfarmhash<0.4, and 0.3.2 has no wheel for Python 3.13, only an sdist
# with a C++ extension. The lock's pip and setuptools go first: sdists build
# with that setuptools (build isolation would fetch an unpinned one). pip's cache is a
# directory mounted for the build if there is one (scripts/build-image
# mounts the local environment's), else off.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends g++ \
    && if [ -d /var/cache/imgcls-pip ]; then \
         unset PIP_NO_CACHE_DIR; export PIP_CACHE_DIR=/var/cache/imgcls-pip; fi \
    && python -m venv /opt/imgcls \
    && lock-section runtime > /tmp/runtime.txt \
    && awk '/^[^ #]/ { p = /^(pip|setuptools)==/ } p' /tmp/runtime.txt > /tmp/installer.txt \
    && pip install --require-hashes --no-deps -r /tmp/installer.txt \
    && pip install --require-hashes --no-build-isolation -r /tmp/runtime.txt \
    && rm /tmp/runtime.txt /tmp/installer.txt \
    && DEBIAN_FRONTEND=noninteractive apt-get purge -y --autoremove g++ \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

# NVIDIA's CUDA libraries as wheels, from the lock's gpu section (the CUDA
# wheels of tensorflow[and-cuda] at the pinned TensorFlow, hash-checked), so
# the Trainer uses the GPUs of the nodes it is scheduled on (about 3 GB more;
# docs/kubeflow.md). For a CPU-only image: --build-arg TENSORFLOW_EXTRA=
# tests/test_image.py runs this step with pip's --dry-run in the CPU image.
ARG TENSORFLOW_EXTRA=and-cuda
RUN if [ -n "$TENSORFLOW_EXTRA" ]; then \
      [ "$TENSORFLOW_EXTRA" = and-cuda ] || { echo "TENSORFLOW_EXTRA: and-cuda or empty, not $TENSORFLOW_EXTRA" >&2; exit 1; }; \
      lock-section gpu > /tmp/gpu.txt \
      && pip install --require-hashes -r /tmp/gpu.txt \
      && rm /tmp/gpu.txt; \
    fi

# Then the project itself; .dockerignore keeps the build context to sources.
COPY . /tmp/imgcls
RUN pip install --no-deps --no-build-isolation --use-pep517 /tmp/imgcls && rm -rf /tmp/imgcls

# The deployment's shared names (model, images, PVCs, mounts, GPU label), the
# one file of kubernetes/ that the image needs: imgcls/contract/deployment.py
# reads it from $IMGCLS_PARAMS_FILE for the CLI's defaults, the same values
# that kustomize puts into the manifests. Rebuild after editing it.
COPY kubernetes/params/params.env /etc/imgcls/params.env
ENV IMGCLS_PARAMS_FILE=/etc/imgcls/params.env

# uid 1000 (the image's user, as the CronJob runs it), and any other uid
# with gid 0 (OpenShift's restricted SCC): what it
# writes is owned by 1000 and group 0, with the group's permissions equal to
# the owner's. KFP's v2 launcher stores input artifacts under /gcs, /minio
# and /s3 (kubeflow/pipelines#5673); backends that mount emptyDirs there do
# not need these, older ones do.
RUN useradd --uid 1000 --user-group --no-create-home --home-dir /home/imgcls \
        --shell /usr/sbin/nologin imgcls \
    && mkdir -p /home/imgcls /gcs /minio /s3 \
    && chown 1000:0 /home/imgcls /gcs /minio /s3 \
    && chmod 0775 /home/imgcls /gcs /minio /s3
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
WORKDIR /home/imgcls

# No ENTRYPOINT: Kubeflow sets the command of every component
# (python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor),
# and the CronJob runs `imgcls retrain`.
CMD ["imgcls", "--help"]
