# The imgcls image: every component of the pipeline on Kubeflow Pipelines, and
# the retrain CronJob (kubernetes/retrain). Build from the repository root:
#   docker build -t imgcls:latest .
#
# Debian 13 (trixie): TFX 1.21's ml-metadata and TFDV wheels need glibc >= 2.39
# (trixie has 2.41). Python 3.13, as in the local environment (scripts/in-env).
FROM python:3.13.13-slim-trixie

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # The project's Keras mode (tf-keras, Keras 2), as scripts/in-env sets it.
    TF_USE_LEGACY_KERAS=1

# The pinned dependencies first, in their own layer: editing the code does not
# reinstall TensorFlow.
COPY requirements.txt /tmp/imgcls/requirements.txt
RUN pip install -r /tmp/imgcls/requirements.txt

# NVIDIA's CUDA libraries as wheels, at the TensorFlow version pinned above, so
# the Trainer uses the GPUs of the nodes it is scheduled on (about 3 GB). For
# a CPU-only image: docker build --build-arg TENSORFLOW_EXTRA= .
ARG TENSORFLOW_EXTRA=and-cuda
RUN if [ -n "$TENSORFLOW_EXTRA" ]; then \
      pip install -c /tmp/imgcls/requirements.txt "tensorflow[$TENSORFLOW_EXTRA]"; \
    fi

# Then the project itself; .dockerignore keeps the build context to sources.
COPY . /tmp/imgcls
RUN pip install --no-deps /tmp/imgcls && rm -rf /tmp/imgcls

# The deployment's shared names (model, images, PVCs, mounts, GPU label), the
# one file of kubernetes/ that the image needs: contract/deployment.py reads
# it from $IMGCLS_PARAMS_FILE for the CLI's defaults, the same values that
# kustomize puts into the manifests. Rebuild after editing it.
COPY kubernetes/params/params.env /etc/imgcls/params.env
ENV IMGCLS_PARAMS_FILE=/etc/imgcls/params.env

# KFP's v2 launcher stores input artifacts under /gcs, /minio and /s3
# (kubeflow/pipelines#5673). Backends that mount emptyDirs there do not need
# these; older ones do, now that the image runs as a non-root user.
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin imgcls \
    && mkdir /gcs /minio /s3 \
    && chown 1000:1000 /gcs /minio /s3
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
WORKDIR /home/imgcls

# No ENTRYPOINT: Kubeflow sets the command of every component
# (python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor),
# and the CronJob runs `imgcls retrain`.
CMD ["imgcls", "--help"]
