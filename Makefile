# The two commands a newcomer needs. Both build the environment on first use
# (scripts/in-env: a .venv, or a Debian 13 rootfs on hosts with glibc < 2.39).
IN_ENV := scripts/in-env
DEMO_DIR ?= _work/demo

.PHONY: test test-fast demo bench clean-demo image

test:  ## the whole suite, the end-to-end pipeline runs included
	$(IN_ENV) python -m pytest -q

test-fast:  ## the suite without pipeline runs, TF subprocesses, KFP compiles, ResNet
	$(IN_ENV) python -m pytest -q -m "not e2e and not slow"

demo:  ## sample data -> TFX pipeline -> pushed model -> one prediction
	test -d $(DEMO_DIR)/data || $(IN_ENV) imgcls sample-data --out $(DEMO_DIR)/data
	$(IN_ENV) imgcls run --data-root $(DEMO_DIR)/data --serving-dir $(DEMO_DIR)/serving --pipeline-root $(DEMO_DIR)/pipeline
	$(IN_ENV) imgcls predict --model-base-path $(DEMO_DIR)/serving/LenetModel $(DEMO_DIR)/data/test/3

bench:  ## every benchmark at full size; writes bench/results.json and docs/benchmarks.md
	$(IN_ENV) python -m bench

IMAGE ?= imgcls:latest
image:  ## the pipeline image, GPU variant (IMAGE_FLAGS=--cpu: CPU-only), with docker or else buildah
	scripts/build-image -t $(IMAGE) $(IMAGE_FLAGS)

clean-demo:
	rm -rf $(DEMO_DIR)
