"""Every name that crosses a step of the pipeline, in one place.

A name here is written by one step and read by another: by the ExampleGen and
the Trainer, by the model and its clients, by a component and the code that
reads its MLMD artifacts back, by Python and the TF Serving it talks to. Both
sides import it from here, so renaming one cannot silently break the other.

Free of TensorFlow, TFX and Beam imports: it sits below every package, and
`imgcls --help` stays instant.
"""

# --- The tf.Example contract: ExampleGen -> Trainer, Evaluator, model -------
IMAGE_KEY = 'image'  # the encoded file, bytes exactly as on disk
LABEL_KEY = 'label'  # int64 index into the sorted class names
LABEL_NAME_KEY = 'label_name'
PATH_KEY = 'path'  # relative to the data root, for reports and debugging
# Facts the ExampleGen reads from each file's header without decoding it
# (imagedata.image_header), for data validation (TFDV statistics); the model
# never reads them. Width, height, channels and file size (bytes) are int64,
# the format (PNG, JPEG, GIF or BMP) is bytes.
IMAGE_WIDTH_KEY = 'image_width'
IMAGE_HEIGHT_KEY = 'image_height'
IMAGE_CHANNELS_KEY = 'image_channels'
IMAGE_FORMAT_KEY = 'image_format'
FILE_SIZE_KEY = 'file_size'
IMAGE_FACT_KEYS = (IMAGE_WIDTH_KEY, IMAGE_HEIGHT_KEY, IMAGE_CHANNELS_KEY,
                   IMAGE_FORMAT_KEY, FILE_SIZE_KEY)
# What the pixels themselves look like, for data validation's drift check:
# the mean and the standard deviation of each channel's intensity, binned, as
# bytes ('red 032-047', one value per channel; a grayscale image's three are
# equal). The ExampleGen decodes a sample of the images for them
# (imagedata.pixel_statistics), so the other examples lack both; the model
# never reads them.
PIXEL_MEAN_KEY = 'pixel_mean'
PIXEL_STD_KEY = 'pixel_std'
PIXEL_STATISTIC_KEYS = (PIXEL_MEAN_KEY, PIXEL_STD_KEY)
# The most pixels (width x height) an image may declare in its header. Ingest
# skips and lists larger files (--max-image-pixels may lower it), and the
# model's decode refuses them in-graph before allocating anything, so that a
# tiny file declaring 30000x30000 cannot exhaust memory. 100 MP covers every
# camera in common use (phones save 12-50 MP, full-frame bodies up to 61 MP)
# while bounding one decoded image to 300 MB of RGB bytes.
MAX_IMAGE_PIXELS = 100_000_000

# Written by the ExampleGen into the Examples artifact, next to its splits:
# the dataset facts (imagedata.dataset_facts: the label vocabulary, counts
# per split and class, spans and skipped files).
DATASET_INFO_FILE = 'dataset_info.json'
TRAIN_SPLIT = 'train'
TEST_SPLIT = 'test'

# --- Trainer -> report: the per-epoch metrics, in the ModelRun artifact -----
HISTORY_FILE = 'history.json'

# --- The model's serving API: model classes -> clients, TFMA, TF Serving ----
SERVING_DEFAULT = 'serving_default'  # TF Serving's default signature
SERVING_BYTES = 'serving_bytes'
SERVING_EXAMPLES = 'serving_examples'
IMAGE_SIGNATURES = (SERVING_BYTES, SERVING_DEFAULT)
PIXELS_INPUT = 'input_tensor'
BYTES_INPUT = 'image_bytes_string'
EXAMPLES_INPUT = 'examples'
LOGITS_OUTPUT = 'logits'
PROBABILITIES_OUTPUT = 'probabilities'
CLASS_ID_OUTPUT = 'class_id'
CLASS_NAME_OUTPUT = 'class_name'
OUTPUT_KEYS = (LOGITS_OUTPUT, PROBABILITIES_OUTPUT, CLASS_ID_OUTPUT,
               CLASS_NAME_OUTPUT)
# TFMA's names for the accuracy the Evaluator gates on, and for the confusion
# matrix the report and the per-class accuracies are read from.
ACCURACY_METRIC = 'sparse_categorical_accuracy'
CONFUSION_PLOT = 'multi_class_confusion_matrix_plot'
# TFMA's model name for the baseline in a model-diff evaluation.
BASELINE_MODEL_NAME = 'baseline'

# --- MLMD custom properties: components -> pipeline.results, report, retrain
# Examples (ImageExampleGen).
PROP_SKIPPED_FILES = 'skipped_files'
PROP_EXAMPLE_COUNTS = 'example_counts'
PROP_TRAIN_SPANS = 'train_spans'
PROP_TEST_SOURCE = 'test_source'
# ModelBlessing (GatedEvaluator) and InfraBlessing (ContractCheck): TFX's own
# 'blessed', and why.
PROP_BLESSED = 'blessed'
PROP_REASON = 'reason'
REASON_PASSED = 'passed'
# Baseline (ServingBaseline).
PROP_HAS_MODEL = 'has_model'
PROP_SERVING_VERSION = 'serving_version'
# PushedModel (TFX's Pusher, and the versioned executor).
PROP_PUSHED = 'pushed'
PROP_PUSHED_VERSION = 'pushed_version'
PROP_PUSHED_DESTINATION = 'pushed_destination'
PROP_ALREADY_PUBLISHED = 'already_published'

# --- Output keys: components -> pipeline.results, report, clients ----------
# A run's artifacts are found in MLMD by the key of the event that output
# them. TFX's components use tfx/types/standard_component_specs.py's keys
# (EXAMPLES_KEY = 'examples', ...); this project's, their output parameters'
# names. tests/test_names.py checks each against the pipeline's components.
ARTIFACT_EXAMPLES = 'examples'  # ImageExampleGen
ARTIFACT_STATISTICS = 'statistics'  # StatisticsGen
ARTIFACT_ANOMALIES = 'anomalies'  # DataValidator
ARTIFACT_BASELINE = 'baseline'  # ServingBaseline
ARTIFACT_BEST_HYPERPARAMETERS = 'best_hyperparameters'  # Tuner
ARTIFACT_TUNER_RESULTS = 'tuner_results'  # Tuner
ARTIFACT_MODEL = 'model'  # Trainer
ARTIFACT_MODEL_RUN = 'model_run'  # Trainer
ARTIFACT_EVALUATION = 'evaluation'  # GatedEvaluator
ARTIFACT_BLESSING = 'blessing'  # GatedEvaluator
ARTIFACT_INFRA_BLESSING = 'infra_blessing'  # ContractCheck
ARTIFACT_PUSHED_MODEL = 'pushed_model'  # VersionedPusher
ARTIFACT_KEYS = (ARTIFACT_EXAMPLES, ARTIFACT_STATISTICS, ARTIFACT_ANOMALIES,
                 ARTIFACT_BASELINE, ARTIFACT_BEST_HYPERPARAMETERS,
                 ARTIFACT_TUNER_RESULTS, ARTIFACT_MODEL, ARTIFACT_MODEL_RUN,
                 ARTIFACT_EVALUATION, ARTIFACT_BLESSING,
                 ARTIFACT_INFRA_BLESSING, ARTIFACT_PUSHED_MODEL)

# --- Output names on Kubeflow Pipelines --------------------------------------
# KFP puts a step's outputs side by side under one task root and downloads an
# input by listing its URI as a key prefix, with no trailing slash
# (kubeflow/pipelines@2.16.1:backend/src/v2/objectstore/object_store.go,
# DownloadBlob): where one output's name begins another's, every step that
# reads the first downloads both. TFX's Trainer keeps its TensorBoard logs in
# `model_run`, beside `model`, so the compiled spec names them apart (TFX's
# name -> the spec's); the step entrypoint maps them back for TFX.
KFP_OUTPUT_NAMES = {ARTIFACT_MODEL_RUN: 'training_logs'}

# --- Pipeline node ids that retrain reads back from a KFP run's tasks --------
# The data gate's failure is a refusal of the data, not a failed run.
DATA_GATE_NODE = 'DataGate'

# --- The local MLMD store, in the pipeline root ------------------------------
METADATA_FILE = 'metadata.sqlite'

# --- The serving directory: Pusher -> TF Serving -----------------------------
# TF Serving ignores assets.extra; it is where extra files of a SavedModel go.
ASSETS_EXTRA = 'assets.extra'
PROVENANCE_FILE = ASSETS_EXTRA + '/imgcls_provenance.json'
# Requests TF Serving replays when it loads a version, before AVAILABLE:
# TFRecords of PredictionLog, at most 1,000 (tensorflow_serving/servables/
# tensorflow/saved_model_warmup_util.h, WarmupConsts). The Pusher writes it;
# the development server replays it too.
WARMUP_REQUESTS_FILE = ASSETS_EXTRA + '/tf_serving_warmup_requests'
MAX_WARMUP_RECORDS = 1000
# Beside the versions, hidden from TF Serving (not an integer): the provenance
# of every pruned version, so `imgcls versions` and `rollback` still know it.
PRUNED_VERSIONS_DIR = '.imgcls-pruned'
# A serving directory in a bucket (serving_dir/bucket.py), where a directory
# rename is a copy. Written last into a version, once all of it is there:
# only versions holding it are published.
PUBLISHED_MARKER = ASSETS_EXTRA + '/imgcls_published'
# TF Serving's --model_config_file for such a directory, at its top: each
# model's entry names the one version to serve (the `specific` policy), so
# the server loads no version before it is complete. One object, rewritten
# whole: TF Serving re-reads it every --model_config_file_poll_wait_seconds.
MODEL_CONFIG_FILE = 'models.config'

# --- TF Serving's ports (tensorflow_model_server's defaults in our manifests)
REST_PORT = 8501
GRPC_PORT = 8500
PROTOCOLS = ('rest', 'grpc')

# --- Tuning: the model class's search space -> Tuner -> Trainer, report -----
# The one hyperparameter that is the optimizer's, not a model option.
LEARNING_RATE_HYPERPARAMETER = 'learning_rate'
# Written by TFX's Tuner into its HyperParameters artifact
# (tfx/components/tuner/executor.py, _DEFAULT_BEST_HP_FILE_NAME).
BEST_HYPERPARAMETERS_FILE = 'best_hyperparameters.txt'
# Pipeline -> the Tuner's tuner_fn (its custom_config): how many trials.
TUNE_TRIALS_KEY = 'tune_trials'
# The Tuner's objective: the best epoch's accuracy on the validation data.
TUNER_OBJECTIVE = 'val_accuracy'

# --- Data validation: StatisticsGen -> schema, validator, gate -> report ----
# The schema directory (<data root>/schema by default), kept across runs:
# the curated schema, which people edit (SchemaGen's own file name), and the
# train statistics of the data last accepted, the next run's drift baseline.
SCHEMA_FILE = 'schema.pbtxt'
ACCEPTED_STATISTICS_FILE = 'accepted_statistics.pb'
# In the validator's ExampleAnomalies artifact, beside TFX's Split-*/
# SchemaDiff.pb: the statistics its drift was measured against.
PREVIOUS_STATISTICS_FILE = 'previous_statistics.pb'
# Schema (CuratedSchemaGen): 1 when inferred by this run, 0 when read from
# the schema directory; and that file's path.
PROP_SCHEMA_INFERRED = 'schema_inferred'
PROP_SCHEMA_FILE = 'schema_file'
# ExampleAnomalies (DataValidator), beside PROP_BLESSED (1: the data may be
# trained on): each anomaly as JSON, {split, feature, what, description};
# whether they were let through on purpose; whether a baseline existed.
PROP_ANOMALIES = 'anomalies'
PROP_ANOMALIES_ACCEPTED = 'anomalies_accepted'
PROP_HAS_PREVIOUS = 'has_previous_statistics'
