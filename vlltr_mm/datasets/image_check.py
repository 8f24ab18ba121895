"""Decoding every listed image once, before a long run depends on it.

A corrupt image otherwise surfaces only when the sampler draws it (a
truncated PNG can end a 30-epoch run in epoch 3). Images are decoded the
way the pipeline's ``LoadImageFromFile`` does it (``mmcv.imfrombytes``
with its ``imdecode_backend`` and ``color_type``), in worker processes
with MMEngine's progress bar. Used by ``LongTailListDataset(
verify_images=True)`` and ``tools/data/check_images.py``.
"""
import os
from functools import partial
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import mmcv
from mmengine.dist import get_rank
from mmengine.fileio import get
from mmengine.utils import track_parallel_progress

#: Below this many images a process pool costs more than it saves.
_MIN_PARALLEL = 256


def decode_settings(pipeline: Iterable) -> dict:
    """``imdecode_backend`` and ``color_type`` of the pipeline's loader.

    Args:
        pipeline (Iterable): Transforms, as objects or config dicts, or a
            ``Compose`` of them.

    Returns:
        dict: ``backend`` and ``flag`` for :func:`mmcv.imfrombytes`
        (``'cv2'`` and ``'color'``, the loader's defaults, when the
        pipeline has no ``LoadImageFromFile``).
    """
    for t in getattr(pipeline, 'transforms', pipeline):
        if isinstance(t, dict):
            if str(t.get('type', '')).endswith('LoadImageFromFile'):
                return dict(backend=t.get('imdecode_backend', 'cv2'),
                            flag=t.get('color_type', 'color'))
        elif hasattr(t, 'imdecode_backend'):
            return dict(backend=t.imdecode_backend,
                        flag=getattr(t, 'color_type', 'color'))
    return dict(backend='cv2', flag='color')


def image_problem(path: str, backend: str = 'cv2',
                  flag: str = 'color') -> Optional[str]:
    """Why ``path`` cannot be loaded as an image, or None if it can.

    Args:
        path (str): Image file (any MMEngine file backend).
        backend (str): ``imdecode_backend``. Defaults to ``'cv2'``.
        flag (str): ``color_type``. Defaults to ``'color'``.

    Returns:
        str | None: A short reason, e.g. ``'is empty (0 bytes)'``.
    """
    try:
        raw = get(path)
    except Exception as e:  # missing, unreadable, backend error
        return f'cannot be read ({type(e).__name__}: {e})'
    if not raw:
        return 'is empty (0 bytes)'
    try:
        img = mmcv.imfrombytes(raw, flag=flag, backend=backend)
    except Exception as e:  # decoder errors have no common type
        return f'cannot be decoded ({type(e).__name__}: {e})'
    if img is None:
        return 'cannot be decoded (truncated or not an image)'
    return None


def find_bad_images(paths: Sequence[str], workers: Optional[int] = None,
                    backend: str = 'cv2', flag: str = 'color',
                    progress: bool = True) -> List[Tuple[int, str]]:
    """Decode every image; return the failures.

    Args:
        paths (Sequence[str]): Image files.
        workers (int, optional): Processes. Defaults to None (all CPUs).
        backend (str): ``imdecode_backend``. Defaults to ``'cv2'``.
        flag (str): ``color_type``. Defaults to ``'color'``.
        progress (bool): Show a bar with ETA. Defaults to True.

    Returns:
        list[tuple[int, str]]: ``(index into paths, reason)``, in order.
    """
    check = partial(image_problem, backend=backend, flag=flag)
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(paths) >= _MIN_PARALLEL:
        chunk = max(1, min(64, len(paths) // (workers * 8)))
        if progress:
            problems = track_parallel_progress(
                check, list(paths), workers, chunksize=chunk)
        else:
            from multiprocessing import Pool
            with Pool(workers) as pool:
                problems = pool.map(check, paths, chunksize=chunk)
    elif progress:
        from mmengine.utils import track_iter_progress
        problems = [check(p) for p in track_iter_progress(list(paths))]
    else:
        problems = [check(p) for p in paths]
    return [(i, why) for i, why in enumerate(problems) if why is not None]


def verify_images(ann_file: str, paths: Sequence[str],
                  locate: Callable[[int], str], pipeline: Iterable) -> None:
    """Decode every listed image; raise naming each bad one with its line.

    Args:
        ann_file (str): The annotation file, for the message.
        paths (Sequence[str]): Image files.
        locate (Callable[[int], str]): Index -> ``"file:line"``.
        pipeline (Iterable): The dataset's pipeline (decoder settings).

    Raises:
        ValueError: Listing up to 20 bad images with their lines.
    """
    bad = find_bad_images(paths, progress=get_rank() == 0,
                          **decode_settings(pipeline))
    if bad:
        shown = '\n'.join(f'  {locate(i)}: {paths[i]} {why}'
                          for i, why in bad[:20])
        raise ValueError(
            f'{ann_file}: {len(bad)} of {len(paths)} listed images cannot '
            f'be loaded:\n{shown}\nreplace or remove them (the list lines '
            'are named above)')
