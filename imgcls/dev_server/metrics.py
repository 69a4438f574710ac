"""TF Serving's metrics, served as its PrometheusExporter serves them.

The names, labels and buckets are TF Serving's and TensorFlow's, so dashboards
built on the real server work on this one:
- :tensorflow:serving:request_count{model_name,status} (servables/tensorflow/
  util.cc, RecordModelRequestCount): every REST request under /v1/, and gRPC
  Predict;
- :tensorflow:serving:request_latency{model_name,API,entrypoint} (util.cc,
  RecordRequestLatency), microseconds, buckets Exponential(10, 1.8, 33):
  successful requests only, API as the handler names it ("predict" over
  REST, "Predict" over gRPC) and entrypoint REST or GRPC;
- :tensorflow:cc:saved_model:load_latency{model_path} and
  :tensorflow:cc:saved_model:load_attempt_count{model_path,status}
  (tensorflow/cc/saved_model/loader.cc);
- :tensorflow:serving:model_warmup_latency{model_path,status}
  (saved_model_warmup_util.cc).
The page format is prometheus_exporter.cc's: '/' in names becomes ':',
histograms list cumulative buckets with le="-1.79769e+308" first and "+Inf"
last, numbers print as absl::StrCat prints them (%g, six digits).
"""
import bisect
import sys
import threading
from typing import Dict, List, Optional, Tuple

import grpc

_LATENCY_BUCKETS = [-sys.float_info.max] + [10 * 1.8**i for i in range(33)]
_REQUEST_COUNT = '/tensorflow/serving/request_count'
_REQUEST_LATENCY = '/tensorflow/serving/request_latency'
_LOAD_LATENCY = '/tensorflow/cc/saved_model/load_latency'
_LOAD_ATTEMPTS = '/tensorflow/cc/saved_model/load_attempt_count'
_WARMUP_LATENCY = '/tensorflow/serving/model_warmup_latency'
_LABELS = {
    _REQUEST_COUNT: ('model_name', 'status'),
    _REQUEST_LATENCY: ('model_name', 'API', 'entrypoint'),
    _LOAD_LATENCY: ('model_path',),
    _LOAD_ATTEMPTS: ('model_path', 'status'),
    _WARMUP_LATENCY: ('model_path', 'status'),
}
_HISTOGRAMS = (_REQUEST_LATENCY, _WARMUP_LATENCY)


def _number(value: float) -> str:
  return f'{value:.6g}'


def _escaped(value: str) -> str:
  return value.replace('\\', '\\\\').replace('"', '\\"')


def status_name(code: grpc.StatusCode) -> str:
  """error::Code_Name: 'OK', 'INVALID_ARGUMENT', ..."""
  return code.name


class Metrics:
  """Counters and histograms, and their Prometheus page.

  Args:
    prometheus_path: where the page is served; None: not served (metrics are
      still counted, which costs next to nothing).
  """

  def __init__(self, prometheus_path: Optional[str] = None):
    self.prometheus_path = prometheus_path
    self._lock = threading.Lock()
    self._counters: Dict[str, Dict[Tuple[str, ...], int]] = {
        name: {} for name in _LABELS if name not in _HISTOGRAMS
    }
    # name -> labels -> [bucket counts..., sum]
    self._histograms: Dict[str, Dict[Tuple[str, ...], List[float]]] = {
        name: {} for name in _HISTOGRAMS
    }

  def record_request(self, model_name: str, api: str, entrypoint: str,
                     code: grpc.StatusCode, seconds: float) -> None:
    self._count(_REQUEST_COUNT, (model_name, status_name(code)))
    if code == grpc.StatusCode.OK:
      self._observe(_REQUEST_LATENCY, (model_name, api, entrypoint),
                    seconds * 1e6)

  def record_load(self, model_path: str, seconds: Optional[float]) -> None:
    """A load of `model_path`: its time if it succeeded, None if it failed."""
    self._count(_LOAD_ATTEMPTS,
                (model_path, 'fail' if seconds is None else 'success'))
    if seconds is not None:
      self._count(_LOAD_LATENCY, (model_path,), int(seconds * 1e6))

  def record_warmup(self, model_path: str, status: str,
                    seconds: float) -> None:
    self._observe(_WARMUP_LATENCY, (model_path, status), seconds * 1e6)

  def _count(self, name: str, labels: Tuple[str, ...], amount: int = 1):
    with self._lock:
      cells = self._counters[name]
      cells[labels] = cells.get(labels, 0) + amount

  def _observe(self, name: str, labels: Tuple[str, ...], value: float):
    with self._lock:
      cell = self._histograms[name].setdefault(
          labels, [0] * (len(_LATENCY_BUCKETS) + 1) + [0.0])
      # Bucket i holds values below limit i (the last: up to DBL_MAX).
      cell[bisect.bisect_right(_LATENCY_BUCKETS, value)] += 1
      cell[-1] += value

  def prometheus_page(self) -> str:
    """PrometheusExporter::GeneratePage."""
    lines: List[str] = []
    with self._lock:
      for name in sorted(_LABELS):
        if name in _HISTOGRAMS:
          cells = self._histograms[name]
          if cells:
            lines += _histogram_lines(name, cells)
        elif self._counters[name]:
          lines += _counter_lines(name, self._counters[name])
    return '\n'.join(lines) + '\n'


def _prometheus_name(name: str) -> str:
  return name.replace('/', ':')


def _label_text(name: str, values: Tuple[str, ...]) -> List[str]:
  return [f'{key}="{_escaped(value)}"'
          for key, value in zip(_LABELS[name], values)]


def _counter_lines(name: str, cells) -> List[str]:
  metric = _prometheus_name(name)
  lines = [f'# TYPE {metric} counter']
  for values, count in sorted(cells.items()):
    lines.append(f'{metric}{{{",".join(_label_text(name, values))}}} {count}')
  return lines


def _histogram_lines(name: str, cells) -> List[str]:
  metric = _prometheus_name(name)
  lines = [f'# TYPE {metric} histogram']
  limits = [_number(limit) for limit in _LATENCY_BUCKETS[1:]] + ['+Inf']
  for values, cell in sorted(cells.items()):
    labels = ','.join(_label_text(name, values))
    counts = cell[1:-1]  # the values below -DBL_MAX never occur
    cumulative = 0
    lowest = _number(_LATENCY_BUCKETS[0])
    lines.append(f'{metric}_bucket{{{labels},le="{lowest}"}} 0')
    for limit, count in zip(limits, counts):
      cumulative += count
      lines.append(f'{metric}_bucket{{{labels},le="{limit}"}} {cumulative}')
    lines.append(f'{metric}_sum{{{labels}}} {_number(cell[-1])}')
    lines.append(f'{metric}_count{{{labels}}} {cumulative}')
  return lines
