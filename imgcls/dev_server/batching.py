"""--enable_batching: requests run together, by TF Serving's rules.

A port of what TF Serving does with a BatchingParameters file:
- bundle_factory_util.cc (GetQueueOptions, WrapSessionForBatching): which
  parameter sets which queue option, and the defaults left when unset
  (SharedBatchScheduler::QueueOptions: max_batch_size 1000,
  batch_timeout_micros 0, max_enqueued_batches 10; num_batch_threads: the
  number of CPUs);
- shared_batch_scheduler.h (Queue::Schedule, ValidateBatchTaskQueueCapacity,
  ScheduleBatch): one queue per signature of a loaded version, all queues
  sharing `num_batch_threads` threads; a request joins the open batch unless
  it would overflow it; a batch runs once it is full, its timeout has passed
  since its first request, or a later batch exists; with
  enable_large_batch_splitting a request is split to fill the open batch and
  then batches of max_execution_batch_size;
- batching_session.cc (ComputeInputSize, MergeInputTensors,
  SplitOutputTensors, ProcessBatch): inputs are concatenated along dimension
  0, padded up to the next allowed_batch_sizes entry with copies of the last
  request's first row, and outputs split back per request; any failure fails
  every request of the batch;
- batching_util.cc (AddPadding): pad_variable_length_inputs pads each
  dimension after the 0th up to the batch's largest, with the tensor's own
  first value, for ranks 1 to 6.
"""
import collections
import dataclasses
import os
import threading
import time
from typing import Callable, Deque, Dict, List, Optional, Sequence, Tuple

import grpc
import numpy as np

from imgcls.clients.status import ServingError, invalid_argument

Tensors = Dict[str, np.ndarray]
_MAX_PADDED_RANK = 6


def _failed_precondition(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


def _unavailable(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.UNAVAILABLE, message)


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
  """A BatchingParameters message, with TF Serving's defaults applied."""
  max_batch_size: int = 1000
  batch_timeout_s: float = 0.0
  max_enqueued_batches: int = 10
  num_batch_threads: int = os.cpu_count() or 1
  enable_large_batch_splitting: bool = False
  max_execution_batch_size: int = 1000
  allowed_batch_sizes: Tuple[int, ...] = ()
  pad_variable_length_inputs: bool = False

  @classmethod
  def from_proto(cls, parameters) -> 'BatchingOptions':
    defaults = cls()

    def value(field, default):
      return getattr(parameters, field).value if parameters.HasField(
          field) else default

    max_batch_size = value('max_batch_size', defaults.max_batch_size)
    splitting = value('enable_large_batch_splitting', False)
    return cls(
        max_batch_size=max_batch_size,
        batch_timeout_s=value('batch_timeout_micros', 0) / 1e6,
        max_enqueued_batches=value('max_enqueued_batches',
                                   defaults.max_enqueued_batches),
        num_batch_threads=value('num_batch_threads',
                                defaults.num_batch_threads),
        enable_large_batch_splitting=splitting,
        max_execution_batch_size=(
            value('max_execution_batch_size', max_batch_size)
            if splitting else max_batch_size),
        allowed_batch_sizes=tuple(parameters.allowed_batch_sizes),
        pad_variable_length_inputs=parameters.pad_variable_length_inputs)

  def check(self) -> None:
    """WrapSessionForBatching's check, which fails a version's load."""
    if (self.allowed_batch_sizes and
        self.allowed_batch_sizes[-1] != self.max_batch_size):
      raise invalid_argument(
          f'Last entry in allowed_batch_sizes must match max_batch_size; '
          f'last entry was {self.allowed_batch_sizes[-1]}; expected '
          f'{self.max_batch_size}')

  def padded_size(self, size: int) -> int:
    """RoundToLowestAllowedBatchSize."""
    return next((s for s in self.allowed_batch_sizes if s >= size), size)


class _Task:
  """One request's rows, or a slice of them; done once its batch ran."""

  def __init__(self, inputs: Tensors, size: int):
    self.inputs = inputs
    self.size = size
    self.outputs: Optional[Tensors] = None
    self.error: Optional[ServingError] = None
    self.done = threading.Event()

  def finish(self, outputs: Optional[Tensors],
             error: Optional[ServingError]) -> None:
    self.outputs, self.error = outputs, error
    self.done.set()


class _Batch:

  def __init__(self):
    self.tasks: List[_Task] = []
    self.size = 0
    self.started = 0.0

  def add(self, task: _Task) -> None:
    if not self.tasks:
      self.started = time.monotonic()
    self.tasks.append(task)
    self.size += task.size


def input_size(inputs: Tensors) -> int:
  """ComputeTensorBatchSize: the 0th dimension all inputs share."""
  if not inputs:
    raise invalid_argument(
        'Batching Run() must have at least one input tensor')
  sizes = set()
  for value in inputs.values():
    if value.ndim == 0:
      raise invalid_argument(
          'Batching Run() input tensors must have at least one dimension')
    sizes.add(value.shape[0])
  if len(sizes) > 1:
    raise invalid_argument(
        'Batching Run() input tensors must have equal 0th-dimension size')
  return sizes.pop()


def split_sizes(size: int, open_remaining: int, max_size: int) -> List[int]:
  """internal::InputSplitMetadata: fill the open batch, then full batches."""
  sizes = []
  if open_remaining > 0:
    sizes.append(min(size, open_remaining))
    size -= sizes[0]
  while size > 0:
    sizes.append(min(size, max_size))
    size -= sizes[-1]
  return sizes


def split_inputs(inputs: Tensors, sizes: Sequence[int]) -> List[Tensors]:
  """SplitInputTask: a request's rows cut along dimension 0 into `sizes`."""
  pieces, start = [], 0
  for piece in sizes:
    pieces.append({k: v[start:start + piece] for k, v in inputs.items()})
    start += piece
  return pieces


def merge_inputs(tasks: Sequence[Tensors], padded_size: int,
                 pad_variable_length_inputs: bool = False) -> Tensors:
  """MergeInputTensors: each input of the tasks concatenated along dimension
  0, then padded up to `padded_size` rows with copies of the last task's
  first row (BatchingOptions.padded_size)."""
  padding = padded_size - sum(input_size(task) for task in tasks)
  merged = {}
  for name in tasks[0]:
    values = [task[name] for task in tasks]
    if pad_variable_length_inputs:
      values = _padded_to_largest(values)
    else:
      _check_same_shapes(name, values)
    values += [values[-1][:1]] * padding
    merged[name] = np.concatenate(values)
  return merged


def split_outputs(outputs: Tensors, sizes: Sequence[int],
                  padded_size: int) -> List[Tensors]:
  """SplitOutputTensors: each output cut back into the tasks' shares; the
  padding's rows are dropped."""
  for value in outputs.values():
    if value.ndim == 0:
      raise _failed_precondition('Batched output tensor has 0 dimensions')
    if value.shape[0] != padded_size:
      raise _failed_precondition(
          "Batched output tensor's 0th dimension does not equal the sum "
          "of the 0th dimension sizes of the input tensors")
  bounds = np.cumsum([0, *sizes])
  return [{
      name: value[start:end] for name, value in outputs.items()
  } for start, end in zip(bounds[:-1], bounds[1:])]


class BatchQueue:
  """The queue of one signature of one version."""

  def __init__(self, scheduler: 'BatchScheduler',
               run: Callable[[Tensors], Tensors]):
    self._scheduler = scheduler
    self._options = scheduler.options
    self._run = run
    self.batches: Deque[_Batch] = collections.deque([_Batch()])
    self.closed = False

  def close(self) -> None:
    self._scheduler.remove(self)

  def run(self, inputs: Tensors) -> Tensors:
    """The outputs for `inputs`, once the batch they joined has run."""
    size = input_size(inputs)
    tasks = self._scheduler.schedule(self, inputs, size)
    for task in tasks:
      task.done.wait()
    errors = [t.error for t in tasks if t.error is not None]
    if errors:
      raise errors[0]
    if len(tasks) == 1:
      return tasks[0].outputs
    return {
        name: np.concatenate([t.outputs[name] for t in tasks])
        for name in tasks[0].outputs
    }

  # The methods below run with the scheduler's lock held.

  def add(self, inputs: Tensors, size: int) -> List[_Task]:
    """ScheduleWithoutOrEagerSplitImpl."""
    self._check_capacity(size)
    max_size = self._options.max_execution_batch_size
    remaining = max_size - self.batches[-1].size
    if size <= remaining or not self._options.enable_large_batch_splitting:
      sizes = [size]
    else:
      sizes = split_sizes(size, remaining, max_size)
    tasks = [_Task(piece, piece_size) for piece, piece_size
             in zip(split_inputs(inputs, sizes), sizes)]
    for task in tasks:
      if self.batches[-1].size + task.size > max_size:
        self.batches.append(_Batch())
      self.batches[-1].add(task)
    return tasks

  def _check_capacity(self, size: int) -> None:
    """ValidateBatchTaskQueueCapacity."""
    options = self._options
    if size > options.max_batch_size:
      raise invalid_argument(f'Task size {size} is larger than maximum input '
                             f'batch size {options.max_batch_size}')
    open_size = self.batches[-1].size
    if options.enable_large_batch_splitting:
      capacity = ((options.max_enqueued_batches - len(self.batches)) *
                  options.max_execution_batch_size +
                  options.max_execution_batch_size - open_size)
      if size > capacity:
        raise _unavailable(
            f'The batch scheduling queue to which this task was submitted is '
            f'full; task size is {size} but scheduling capacity is only '
            f'{capacity} (num_enqueued_batches={len(self.batches)}, '
            f'max_enqueued_batches={options.max_enqueued_batches}, '
            f'open_batch_size={open_size}, max_execution_batch_size='
            f'{options.max_execution_batch_size})')
    elif (open_size + size > options.max_batch_size and
          len(self.batches) >= options.max_enqueued_batches):
      raise _unavailable(
          f'The batch scheduling queue to which this task was submitted is '
          f'full; currently {len(self.batches)} batches enqueued and '
          f'max_enqueued_batches is {options.max_enqueued_batches}')

  def ready_at(self) -> Optional[float]:
    """When a batch of this queue can run (now or later), or None."""
    if len(self.batches) > 1:
      return self.batches[0].started
    open_batch = self.batches[-1]
    if not open_batch.tasks:
      return None
    if open_batch.size >= self._options.max_execution_batch_size:
      return open_batch.started
    return open_batch.started + self._options.batch_timeout_s

  def take(self) -> _Batch:
    if len(self.batches) == 1:
      self.batches.append(_Batch())
    return self.batches.popleft()

  # Outside the lock.

  def process(self, batch: _Batch) -> None:
    """ProcessBatch: merge, run, split; the status goes to every task."""
    padded = self._options.padded_size(batch.size)
    try:
      outputs = self._run(merge_inputs(
          [task.inputs for task in batch.tasks], padded,
          self._options.pad_variable_length_inputs))
      pieces = split_outputs(outputs, [task.size for task in batch.tasks],
                             padded)
    except ServingError as e:
      for task in batch.tasks:
        task.finish(None, e)
      return
    for task, task_outputs in zip(batch.tasks, pieces):
      task.finish(task_outputs, None)

def _check_same_shapes(name: str, values: List[np.ndarray]) -> None:
  reference = values[0].shape[1:]
  if any(v.shape[1:] != reference for v in values[1:]):
    raise _failed_precondition(
        f"Tensors with name '{name}' from different tasks have different "
        f"shapes and padding is turned off. Set pad_variable_length_inputs to "
        f"true, or ensure that all tensors with the same name have equal "
        f"dimensions starting with the first dim.")


def _padded_to_largest(values: List[np.ndarray]) -> List[np.ndarray]:
  """AddPadding for each task's tensor, up to CalculateMaxDimSizes."""
  largest = np.max([v.shape for v in values], axis=0)
  padded = []
  for value in values:
    widths = [(0, 0)] + [(0, int(m - d))
                         for m, d in zip(largest[1:], value.shape[1:])]
    if not any(after for _, after in widths):
      padded.append(value)
      continue
    if not 1 <= value.ndim <= _MAX_PADDED_RANK:
      raise invalid_argument(
          'Only tensors with rank from 1 to 6 can be padded.')
    if value.size == 0:
      raise invalid_argument(
          'Got empty tensor in batch of non-empty tensors.')
    padded.append(np.pad(value, widths, constant_values=value.flat[0]))
  return padded


class BatchScheduler:
  """SharedBatchScheduler: `num_batch_threads` threads for every queue."""

  def __init__(self, options: BatchingOptions):
    self.options = options
    self._lock = threading.Condition()
    self._queues: List[BatchQueue] = []
    self._stopping = False
    self._threads = [
        threading.Thread(target=self._work, name=f'batch-{i}', daemon=True)
        for i in range(max(1, options.num_batch_threads))
    ]
    for thread in self._threads:
      thread.start()

  def queue(self, run: Callable[[Tensors], Tensors]) -> BatchQueue:
    queue = BatchQueue(self, run)
    with self._lock:
      self._queues.append(queue)
    return queue

  def remove(self, queue: BatchQueue) -> None:
    """Stops scheduling for `queue`; batches already in it still run."""
    with self._lock:
      queue.closed = True
      self._drop_finished_queues()

  def _drop_finished_queues(self) -> None:
    self._queues = [
        q for q in self._queues
        if not q.closed or any(b.tasks for b in q.batches)
    ]

  def schedule(self, queue: BatchQueue, inputs: Tensors,
               size: int) -> List[_Task]:
    with self._lock:
      tasks = queue.add(inputs, size)
      self._lock.notify_all()
    return tasks

  def stop(self) -> None:
    with self._lock:
      self._stopping = True
      self._lock.notify_all()
    for thread in self._threads:
      thread.join()

  def _work(self) -> None:
    while True:
      with self._lock:
        picked = self._next_batch()
        while picked is None:
          if self._stopping:
            return
          self._lock.wait(self._seconds_until_ready())
          picked = self._next_batch()
      queue, batch = picked
      queue.process(batch)
      with self._lock:
        self._drop_finished_queues()

  def _next_batch(self) -> Optional[Tuple[BatchQueue, _Batch]]:
    """The ready batch that has waited longest (ScheduleBatch)."""
    now = time.monotonic()
    ready = [(q.ready_at(), index, q) for index, q in enumerate(self._queues)]
    ready = [r for r in ready if r[0] is not None and r[0] <= now]
    if not ready:
      return None
    queue = min(ready, key=lambda r: r[:2])[2]
    return queue, queue.take()

  def _seconds_until_ready(self) -> Optional[float]:
    times = [q.ready_at() for q in self._queues]
    times = [t for t in times if t is not None]
    return max(0.0, min(times) - time.monotonic()) if times else None
