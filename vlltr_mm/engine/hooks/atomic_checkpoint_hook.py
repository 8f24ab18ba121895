"""Checkpoints that are never half-written and never lost to a failed save.

MMEngine's :class:`~mmengine.hooks.CheckpointHook` has two weak spots:

* its storage backend (:class:`~mmengine.fileio.LocalBackend`) writes each
  file in place, so ``kill -9`` or a full disk during a save leaves a
  partial ``epoch_N.pth`` under the final name, and ``ENOSPC`` surfaces
  without the file or the free space;
* before it writes a new checkpoint it deletes the one that falls out of
  ``max_keep_ckpts`` and the previous ``best_*.pth``, so a failed save
  also costs the files that were still good.

MMEngine routes every checkpoint write through the backend named by the
hook's ``backend_args``, so :class:`AtomicLocalBackend` (registered as
``'atomic_local'``) is the one place that sees every write, ``best_*``
included; it writes through :func:`~vlltr_mm.utils.atomic_write` (a
temporary file in the same folder, renamed into place). Deletions happen
inside the hook, so :class:`AtomicCheckpointHook` postpones them until the
save that caused them has succeeded. A Runner subclass would achieve the
same but would have to be chosen by every config and tool; the hook is
one line of ``configs/_base_/default_runtime.py``.

``last_checkpoint`` is still written in place by MMEngine (a path of a few
bytes); ``tools/train.py --resume`` refuses an empty or dangling one.
"""
import contextlib
import os
import os.path as osp
import shutil
from typing import Iterator, List, Union

from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmpretrain.registry import HOOKS

from ...utils.files import atomic_write

ATOMIC_BACKEND = 'atomic_local'


def _mib(num_bytes: float) -> str:
    return f'{num_bytes / 2**20:.1f} MiB'


@register_backend(ATOMIC_BACKEND)
class AtomicLocalBackend(LocalBackend):
    """:class:`LocalBackend` whose writes replace the file in one step.

    The bytes go to a hidden temporary file beside the target
    (``.epoch_2.pth.<random>.tmp``), are flushed to disk and renamed over
    the target, so the target is either the old file or the whole new one.
    A failed write removes the temporary file; a killed process can leave
    it behind (``tools/train.py`` removes such leftovers at the next start).
    """

    def put(self, obj: bytes, filepath: Union[str, os.PathLike]) -> None:
        """Write ``obj`` to ``filepath`` atomically.

        Args:
            obj (bytes): The file's whole content (MMEngine serialises a
                checkpoint to bytes before it hands it to the backend).
            filepath (str | PathLike): Final file name; its folder is
                created if needed.

        Raises:
            OSError: If the write fails (e.g. ``ENOSPC``), with the same
                errno and a message naming the file, its size and the
                free space left in its folder.
        """
        path = str(filepath)
        try:
            with atomic_write(path) as f:
                f.write(obj)
        except OSError as e:
            folder = osp.dirname(osp.abspath(path))
            try:
                free = f'{_mib(shutil.disk_usage(folder).free)} free'
            except OSError:
                free = 'free space unknown'
            raise OSError(
                e.errno, f'Could not save checkpoint {path} ({_mib(len(obj))}'
                f'): {e.strerror or e}; {free} in {folder}. The earlier '
                'checkpoints there are intact: make room (or choose '
                'another --work-dir) and continue with --resume.') from e

    def put_text(self, obj: str, filepath: Union[str, os.PathLike],
                 encoding: str = 'utf-8') -> None:
        """Write text atomically (see :meth:`put`)."""
        self.put(obj.encode(encoding), filepath)


class _RemovalsDeferred:
    """A file backend whose ``remove`` / ``rmtree`` only record the path.

    Everything else is the wrapped backend's.
    """

    def __init__(self, backend):
        self._backend = backend
        self.removed: List[tuple] = []

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def remove(self, path) -> None:
        self.removed.append(('remove', path))

    def rmtree(self, path) -> None:
        self.removed.append(('rmtree', path))


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """:class:`~mmengine.hooks.CheckpointHook` whose saves cannot lose files.

    * Every checkpoint (``epoch_N`` / ``iter_N`` / ``best_*``) is written
      by :class:`AtomicLocalBackend` when it goes to a local folder and no
      other backend is configured.
    * Files that the save makes obsolete (beyond ``max_keep_ckpts``, the
      previous best) are deleted only after it succeeded; a failed save
      leaves them all. The disk therefore briefly holds one checkpoint
      more than ``max_keep_ckpts``.

    Args:
        **kwargs: :class:`~mmengine.hooks.CheckpointHook`'s arguments.
            ``backend_args`` defaults to ``dict(backend='atomic_local')``
            for a local ``out_dir`` (None: the work dir); a remote
            ``out_dir`` or explicit ``backend_args`` / ``file_client_args``
            are kept as they are.
    """

    def __init__(self, **kwargs):
        remote = '://' in str(kwargs.get('out_dir') or '')
        if not remote and kwargs.get('backend_args') is None \
                and kwargs.get('file_client_args') is None:
            kwargs['backend_args'] = dict(backend=ATOMIC_BACKEND)
        super().__init__(**kwargs)

    @contextlib.contextmanager
    def _removals_after_save(self) -> Iterator[None]:
        backend = getattr(self, 'file_backend', None)
        if backend is None:  # before_train has not run (e.g. a val run)
            yield
            return
        deferred = self.file_backend = _RemovalsDeferred(backend)
        try:
            yield
        finally:
            self.file_backend = backend
        # Only reached when the save succeeded.
        for method, path in deferred.removed:
            getattr(backend, method)(path)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if self.by_epoch:  # MMEngine saves nothing per iteration then
            return
        with self._removals_after_save():
            super().after_train_iter(runner, batch_idx, data_batch, outputs)

    def after_train_epoch(self, runner) -> None:
        with self._removals_after_save():
            super().after_train_epoch(runner)

    def after_val_epoch(self, runner, metrics) -> None:
        with self._removals_after_save():
            super().after_val_epoch(runner, metrics)
