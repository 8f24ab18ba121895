"""Build class descriptions in the authors' layout for any class list.

Writes ``OUT_DIR/labels.txt`` (one class name per line) and
``OUT_DIR/wiki/desc_{i}.txt`` (MediaWiki plain text with ``== Section ==``
headers), the layout ``ClassTextCorpus(wiki_dir=...)`` reads.

Sources:

* ``wikipedia``: the MediaWiki API (stdlib ``urllib``). The class name is
  tried as a page title (redirects followed); a missing, empty or
  disambiguation page falls back to the top search hits. Requests are
  rate-limited, retried with exponential back-off (``Retry-After`` and
  ``maxlag`` honoured) and the build resumes: finished classes are skipped
  (state in ``OUT_DIR/build_state.json``). Classes without a page are
  listed in ``OUT_DIR/no_page.txt``; the corpus then uses prompts for them.
* ``wordnet``: offline WordNet glosses (definition, synonyms, hypernyms,
  hyponyms) when NLTK's ``wordnet`` corpus is installed. Names that are
  WordNet ids (``n02123045``) map to their synset directly.

Example::

    python tools/text/build_class_text.py data/imagenet_lt_text \\
        --labels-file data/imagenet/labels.txt --lang en
"""
import argparse
import functools
import importlib.util
import json
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence

# The API client lives beside this script (also when loaded by path).
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from wikipedia_client import (  # noqa: E402
    DEFAULT_USER_AGENT,
    NoNetworkError,
    WikipediaClient,
)
from wordnet_text import load_wordnet, wordnet_text  # noqa: E402


@functools.lru_cache(maxsize=None)
def _atomic_write():
    """``vlltr_mm.utils.files.atomic_write`` without importing vlltr_mm.

    The module is stdlib-only, while ``import vlltr_mm`` loads torch and
    MMPretrain (seconds): this tool should answer "no network" at once.
    ``find_spec`` locates the package without running its ``__init__``.
    """
    folder = importlib.util.find_spec('vlltr_mm').submodule_search_locations
    spec = importlib.util.spec_from_file_location(
        '_vlltr_mm_files', osp.join(folder[0], 'utils', 'files.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.atomic_write


def _write_atomic(path: str, text: str) -> None:
    with _atomic_write()(path, 'w') as f:
        f.write(text)


def _read_state(state_file: str) -> dict:
    """Per-class state of earlier runs; a damaged file is named."""
    try:
        with open(state_file, encoding='utf-8') as f:
            return json.load(f)['classes']
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f'{state_file} is damaged ({type(e).__name__}: {e}); delete it '
            'or rerun with --restart (descriptions are fetched again)'
        ) from None


def build_class_text(out_dir: str, class_names: Sequence[str],
                     source: str = 'wikipedia',
                     client: Optional[WikipediaClient] = None,
                     wordnet=None, retry_missing: bool = False,
                     progress: bool = True, restart: bool = False) -> dict:
    """Fetch a description per class into ``out_dir`` (resumable).

    Args:
        out_dir (str): Output folder (``labels.txt``, ``wiki/``).
        class_names (Sequence[str]): Names in label order.
        source (str): ``'wikipedia'`` or ``'wordnet'``.
        client (WikipediaClient, optional): For ``'wikipedia'``.
        wordnet (optional): An NLTK WordNet reader for ``'wordnet'``.
        retry_missing (bool): Retry classes recorded without a page.
        progress (bool): Show a progress bar.
        restart (bool): Ignore the state of earlier runs.

    Returns:
        dict: ``fetched``, ``skipped``, ``no_page``, ``failed`` (lists of
        class indices for this run; ``no_page`` covers all runs) and
        ``errors`` (class index -> cause of its failure).

    Raises:
        ValueError: Repeated class names, another class list in
            ``out_dir``, or a damaged ``build_state.json``.
        NoNetworkError: The API cannot be reached; the state is saved.
    """
    from tqdm import tqdm

    if source not in ('wikipedia', 'wordnet'):
        raise ValueError(f'unknown source {source!r}')
    wiki = osp.join(out_dir, 'wiki')
    os.makedirs(wiki, exist_ok=True)
    labels = osp.join(out_dir, 'labels.txt')
    names = [str(n).strip() for n in class_names]
    first = {}
    for i, name in enumerate(names):
        if name in first:
            raise ValueError(
                f'class name {name!r} is given twice (classes {first[name]}'
                f' and {i}); class names must be unique (rename one, e.g. '
                '"crane (bird)")')
        first[name] = i
    if osp.isfile(labels):
        with open(labels, encoding='utf-8') as f:
            if f.read().splitlines() != names:
                raise ValueError(f'{labels} holds another class list; use a '
                                 'new output folder')
    else:
        _write_atomic(labels, '\n'.join(names) + '\n')
    state_file = osp.join(out_dir, 'build_state.json')
    state = {}
    if osp.isfile(state_file) and not restart:
        state = _read_state(state_file)
    if source == 'wikipedia':
        client = client or WikipediaClient()
        fetch = client.fetch
    else:
        wordnet = wordnet or load_wordnet()

        def fetch(name):
            text = wordnet_text(name, wordnet)
            return None if text is None else (name, text)

    report = dict(fetched=[], skipped=[], no_page=[], failed=[], errors={})
    for i in tqdm(range(len(names)), desc=f'class text ({source})',
                  disable=not progress):
        entry = state.get(str(i), {})
        desc = osp.join(wiki, f'desc_{i}.txt')
        if ((entry.get('status') == 'ok' and osp.isfile(desc))
                or (entry.get('status') == 'no_page' and not retry_missing)):
            report['skipped'].append(i)
            continue
        try:
            found = fetch(names[i])
        except NoNetworkError:
            raise  # nothing else can succeed; earlier classes are saved
        except RuntimeError as e:
            state[str(i)] = dict(name=names[i], status='failed',
                                 error=str(e))
            report['failed'].append(i)
            report['errors'][i] = str(e)
        else:
            if found is None:
                state[str(i)] = dict(name=names[i], status='no_page')
            else:
                _write_atomic(desc, found[1].rstrip('\n') + '\n')
                state[str(i)] = dict(name=names[i], status='ok',
                                     title=found[0])
                report['fetched'].append(i)
        _write_atomic(state_file,
                      json.dumps(dict(source=source, classes=state),
                                 indent=1))
    report['no_page'] = sorted(
        int(k) for k, v in state.items() if v['status'] == 'no_page')
    _write_atomic(osp.join(out_dir, 'no_page.txt'), ''.join(
        f'{i}\t{names[i]}\n' for i in report['no_page']))
    return report


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out_dir')
    names = parser.add_mutually_exclusive_group(required=True)
    names.add_argument('--labels-file', help='one class name per line (or '
                       "the authors' ImageNet-LT / Places-LT labels.txt)")
    names.add_argument('--class-names', nargs='+')
    parser.add_argument('--source', default='wikipedia',
                        choices=['wikipedia', 'wordnet'])
    parser.add_argument('--lang', default='en')
    parser.add_argument('--api-url', help='api.php URL (overrides --lang)')
    parser.add_argument('--min-interval', type=float, default=1.0)
    parser.add_argument('--max-retries', type=int, default=5)
    parser.add_argument('--backoff', type=float, default=2.0)
    parser.add_argument('--timeout', type=float, default=30.0)
    parser.add_argument('--user-agent', default=DEFAULT_USER_AGENT)
    parser.add_argument('--nltk-data',
                        help='extra NLTK data root holding corpora/wordnet')
    parser.add_argument('--retry-missing', action='store_true')
    parser.add_argument('--restart', action='store_true',
                        help='ignore build_state.json of earlier runs')
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    client = wordnet = None
    try:
        if args.labels_file:
            from vlltr_mm.datasets.annotation_io import read_class_names
            class_names = read_class_names(args.labels_file)
        else:
            class_names = args.class_names
        if args.source == 'wikipedia':
            client = WikipediaClient(
                lang=args.lang, api_url=args.api_url,
                min_interval=args.min_interval,
                max_retries=args.max_retries, backoff=args.backoff,
                timeout=args.timeout, user_agent=args.user_agent)
        else:
            wordnet = load_wordnet(args.nltk_data)
        report = build_class_text(args.out_dir, class_names, args.source,
                                  client, wordnet, args.retry_missing,
                                  not args.no_progress, args.restart)
    except NoNetworkError as e:
        print(f'error: no network: {e}. Check the connection (or the '
              'HTTPS_PROXY setting, or --api-url), or build offline with '
              '--source wordnet; finished classes are kept, rerun to '
              'continue.', file=sys.stderr)
        return 2
    except (OSError, ValueError, RuntimeError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f"fetched {len(report['fetched'])}, skipped "
          f"{len(report['skipped'])} (done before), failed "
          f"{len(report['failed'])}, without a page "
          f"{len(report['no_page'])} of {len(class_names)} classes")
    if report['no_page']:
        print('classes without a page (prompts only; see no_page.txt): ' +
              ', '.join(class_names[i] for i in report['no_page']))
    if report['failed']:
        print('failed (rerun to retry): ' + ', '.join(
            f"{class_names[i]} ({report['errors'][i]})"
            for i in report['failed']))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
