"""Decoding of the text files a user hands over (lists, labels, JSON).

One decoder so that every reader treats a UTF-8 byte-order mark (written by
Windows editors) and a non-UTF-8 file the same way: the mark is dropped (it
would otherwise become part of the first path or class name) and a wrong
encoding fails with the file, line and column at fault.
"""
import codecs

from mmengine.fileio import get


def decode_utf8(raw: bytes, path: str) -> str:
    """Decode a file's bytes as UTF-8, without a leading byte-order mark.

    Args:
        raw (bytes): The file's content.
        path (str): The file, for the error message.

    Returns:
        str: The text.

    Raises:
        UnicodeError: For bytes that are not UTF-8; the message reads
            ``"<path>:<line>: byte 0x.. at column .. is not UTF-8 ..."``.
    """
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError as err:
        line = raw.count(b'\n', 0, err.start) + 1
        column = err.start - (raw.rfind(b'\n', 0, err.start) + 1) + 1
        raise UnicodeError(
            f'{path}:{line}: byte 0x{raw[err.start]:02x} at column {column}'
            ' is not UTF-8; save the file as UTF-8 (e.g. `iconv -f latin1 '
            f'-t utf-8 {path} > new.txt`)') from None


def read_text(path: str) -> str:
    """Read a local or remote (MMEngine file backend) UTF-8 text file.

    Args:
        path (str): The file.

    Returns:
        str: Its text, byte-order mark removed.

    Raises:
        UnicodeError: See :func:`decode_utf8`.
    """
    return decode_utf8(get(path), path)
