"""Writing and fingerprinting files: the one home of both jobs.

Every cache, artifact and state file the package writes goes through
:func:`atomic_write`, so a crash (or ``kill -9``) never leaves a half-written
file under the final name, and the file gets the mode the user's umask asks
for. :func:`tempfile.mkstemp` creates its file with mode 0600 on purpose
(it is private until renamed); a cache shared by a team must not stay that
way, so the mode is widened to ``0666 & ~umask`` (0644 by default) before
the rename, as ``open(path, 'w')`` would have done.
"""
import contextlib
import hashlib
import os
import os.path as osp
import tempfile
from typing import IO, Iterator, Union


def _umask() -> int:
    # The umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'wb',
                 encoding: Union[str, None] = None) -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` when the block ends.

    The parent directory is created if needed. On an exception the
    temporary file is removed and ``path`` is left as it was.

    Args:
        path (str): Final file name.
        mode (str): ``'wb'`` or ``'w'``. Defaults to ``'wb'``.
        encoding (str, optional): Text encoding for ``mode='w'``.
            Defaults to None (``'utf-8'`` in text mode).

    Yields:
        IO: The open temporary file (``torch.save``, ``np.savez`` and
        ``json.dump`` accept it).

    Raises:
        ValueError: If ``mode`` is not ``'w'`` or ``'wb'``.
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode}")
    if mode == 'w' and encoding is None:
        encoding = 'utf-8'
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def file_sha256(path: str, block: int = 1 << 22) -> str:
    """Return the hex sha256 of a file's bytes, read in blocks.

    Args:
        path (str): The file.
        block (int): Bytes read at a time. Defaults to 4 MiB.

    Returns:
        str: 64 hex digits.
    """
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(block), b''):
            digest.update(chunk)
    return digest.hexdigest()
